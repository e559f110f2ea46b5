/* random: N random bytes (the request body, a decimal count up to 4096; default 32), as hex. */
#include "common.h"

int main(void) {
    size_t len;
    start();
    unsigned char *body = read_request(&len);
    unsigned long n = 32;
    if (len > 0) {
        char *end;
        n = strtoul((const char *) body, &end, 10);
        while (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t')
            end++;
        if (end == (char *) body || *end != 0 || n == 0 || n > 4096)
            fail("the request must be a byte count from 1 to 4096");
    }
    unsigned char buf[4096];
    randombytes_buf(buf, n);
    put_hex(buf, n);
    return 0;
}
