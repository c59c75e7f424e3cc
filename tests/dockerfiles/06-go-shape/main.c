#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "util.h"

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--self-test") == 0) {
        puts("ok");
        return 0;
    }
    printf("%s %s running as uid %d\n", greeting(), VERSION, (int)getuid());
    return 0;
}
