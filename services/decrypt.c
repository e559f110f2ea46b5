/* decrypt: the inverse of encrypt. Request: hex(nonce || ciphertext); response: the plaintext.
 * A forged or damaged message exits with status 2. */
#include "common.h"

int main(void) {
    size_t text_len, len;
    unsigned char key[crypto_secretbox_KEYBYTES];
    start();
    unsigned char *text = read_request(&text_len);
    unsigned char *box = get_hex(text, text_len, &len);
    if (len < crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES)
        fail("the message is too short");
    service_key(key);
    size_t plain_len = len - crypto_secretbox_NONCEBYTES - crypto_secretbox_MACBYTES;
    unsigned char *plain = malloc(plain_len + 1);
    if (plain == NULL)
        fail("out of memory");
    if (crypto_secretbox_open_easy(plain, box + crypto_secretbox_NONCEBYTES, len - crypto_secretbox_NONCEBYTES,
                                   box, key) != 0)
        fail("the message does not authenticate");
    fwrite(plain, 1, plain_len, stdout);
    return 0;
}
