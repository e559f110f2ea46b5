/* Recursion at a chosen depth: `recursion DEPTH CALLS` makes about CALLS calls of `down`, as
 * descents DEPTH frames deep, and prints a checksum. The work after the recursive call keeps
 * clang from turning the recursion into a loop. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) static uint32_t down(uint32_t n, uint32_t x) {
    if (n == 0)
        return x;
    uint32_t r = down(n - 1, x * 2654435761u + n);
    return (r ^ (r >> 13)) + n;
}

int main(int argc, char **argv) {
    uint32_t depth = argc > 1 ? (uint32_t)atoi(argv[1]) : 64;
    uint32_t calls = argc > 2 ? (uint32_t)atoi(argv[2]) : 4000000;
    uint32_t sum = 0;
    for (uint32_t i = 0; i < calls / (depth + 1); i++)
        sum += down(depth, i + sum);
    printf("%u\n", sum);
    return 0;
}
