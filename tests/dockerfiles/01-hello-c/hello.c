#include <stdio.h>

int main(void) {
    puts("Hello from a C program built in a Dockerfile stage!");
    return 0;
}
