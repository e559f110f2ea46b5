/* invert: the inverse modulo the order of the ed25519 group of a scalar given as 64 hex digits. */
#include "common.h"

int main(void) {
    size_t text_len, len;
    unsigned char inverse[crypto_core_ed25519_SCALARBYTES];
    start();
    unsigned char *text = read_request(&text_len);
    unsigned char *scalar = get_hex(text, text_len, &len);
    if (len != crypto_core_ed25519_SCALARBYTES)
        fail("the scalar must be 32 bytes (64 hex digits)");
    if (crypto_core_ed25519_scalar_invert(inverse, scalar) != 0)
        fail("zero has no inverse");
    put_hex(inverse, sizeof inverse);
    return 0;
}
