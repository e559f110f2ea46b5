/* Call-heavy micro-benchmark: recursion, small leaf calls and calls through function pointers.
 * `calls [N]` prints a checksum; every call is a dispatch in a multivariant build. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) static uint32_t fib(uint32_t n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

__attribute__((noinline)) static uint32_t mix(uint32_t a, uint32_t b) { return (a ^ (b << 5)) + (b >> 3) + 0x9e3779b9u; }
__attribute__((noinline)) static uint32_t step_add(uint32_t a) { return a + 7; }
__attribute__((noinline)) static uint32_t step_xor(uint32_t a) { return a ^ 0x5bd1e995u; }
__attribute__((noinline)) static uint32_t step_rot(uint32_t a) { return (a << 13) | (a >> 19); }

static uint32_t (*const steps[])(uint32_t) = {step_add, step_xor, step_rot};

__attribute__((noinline)) static uint32_t ackermann(uint32_t m, uint32_t n) {
    if (m == 0) return n + 1;
    if (n == 0) return ackermann(m - 1, 1);
    return ackermann(m - 1, ackermann(m, n - 1));
}

int main(int argc, char **argv) {
    uint32_t n = argc > 1 ? (uint32_t)atoi(argv[1]) : 27;
    uint32_t sum = fib(n);
    for (uint32_t i = 0; i < 300000u * (n > 20 ? n - 20 : 1); i++)
        sum = mix(sum, steps[i % 3](i));
    sum += ackermann(2, 2000);
    printf("%u\n", sum);
    return 0;
}
