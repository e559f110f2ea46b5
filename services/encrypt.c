/* encrypt: authenticated encryption of the request body with the service key.
 * Response: hex(nonce || crypto_secretbox_easy(body)), one line. */
#include "common.h"

int main(void) {
    size_t len;
    unsigned char key[crypto_secretbox_KEYBYTES];
    start();
    unsigned char *body = read_request(&len);
    service_key(key);
    unsigned char *out = malloc(crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + len);
    if (out == NULL)
        fail("out of memory");
    randombytes_buf(out, crypto_secretbox_NONCEBYTES);
    crypto_secretbox_easy(out + crypto_secretbox_NONCEBYTES, body, len, out, key);
    put_hex(out, crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + len);
    return 0;
}
