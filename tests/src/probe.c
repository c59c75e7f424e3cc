/* berth-probe: small attacks and checks run inside containers by the tests.
 * Static, so that it runs in a busybox image. Each prints what happened,
 * one line per attempt, and exits 0 unless it was used wrongly. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/io_uring.h>
#include <netinet/ip_icmp.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

/* Push a command into the input of the terminal on fds 0, 1 and 2. */
static int tiocsti(void) {
    const char *keys = "echo INJECTED\n";
    for (int fd = 0; fd <= 2; fd++) {
        int ok = 1;
        for (const char *c = keys; *c; c++)
            if (ioctl(fd, TIOCSTI, c) != 0) { ok = 0; break; }
        printf("tiocsti fd %d: %s\n", fd, ok ? "INJECTED" : strerror(errno));
    }
    return 0;
}

static int io_uring(void) {
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    long fd = syscall(__NR_io_uring_setup, 1, &params);
    printf("io_uring_setup: %s\n", fd >= 0 ? "ALLOWED" : strerror(errno));
    return 0;
}

/* A raw packet socket: what forging ARP replies needs. */
static int raw(void) {
    int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ARP));
    printf("raw packet socket: %s\n", fd >= 0 ? "ALLOWED" : strerror(errno));
    return 0;
}

/* ping 127.0.0.1 the unprivileged way: an ICMP datagram socket. */
static int ping(void) {
    int fd = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
    if (fd < 0) { printf("ping socket: %s\n", strerror(errno)); return 0; }
    struct sockaddr_in to = { .sin_family = AF_INET };
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct icmphdr echo = { .type = ICMP_ECHO };
    echo.un.echo.sequence = htons(1);
    struct timeval wait = { .tv_sec = 2 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
    if (sendto(fd, &echo, sizeof echo, 0, (struct sockaddr *)&to, sizeof to) < 0) {
        printf("ping send: %s\n", strerror(errno)); return 0;
    }
    struct icmphdr reply;
    if (recv(fd, &reply, sizeof reply, 0) < 0) { printf("ping recv: %s\n", strerror(errno)); return 0; }
    printf("ping: %s\n", reply.type == ICMP_ECHOREPLY ? "reply from 127.0.0.1" : "unexpected answer");
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "tiocsti")) return tiocsti();
    if (argc == 2 && !strcmp(argv[1], "io_uring")) return io_uring();
    if (argc == 2 && !strcmp(argv[1], "raw")) return raw();
    if (argc == 2 && !strcmp(argv[1], "ping")) return ping();
    fprintf(stderr, "usage: berth-probe tiocsti|io_uring|raw|ping\n");
    return 2;
}
