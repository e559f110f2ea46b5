/* bin2base64: the request body in standard base64 (with padding), one line. */
#include "common.h"

int main(void) {
    size_t len;
    start();
    unsigned char *body = read_request(&len);
    size_t size = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
    char *b64 = malloc(size);
    if (b64 == NULL)
        fail("out of memory");
    sodium_bin2base64(b64, size, body, len, sodium_base64_VARIANT_ORIGINAL);
    printf("%s\n", b64);
    return 0;
}
