/* Shared by the edge services: CGI-style WASI commands. The request body arrives on stdin,
 * the response goes to stdout, and a bad request exits with status 2 and one line on stderr. */
#ifndef SERVICES_COMMON_H
#define SERVICES_COMMON_H

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REQUEST (1u << 20)

/* Reads all of stdin into a buffer the caller frees; *len gets its size. */
static unsigned char *read_request(size_t *len) {
    unsigned char *buf = malloc(MAX_REQUEST + 1);
    if (buf == NULL) {
        fputs("out of memory\n", stderr);
        exit(1);
    }
    *len = fread(buf, 1, MAX_REQUEST, stdin);
    if (!feof(stdin)) {
        fputs("request too large\n", stderr);
        exit(2);
    }
    buf[*len] = 0;
    return buf;
}

static void start(void) {
    if (sodium_init() < 0) {
        fputs("libsodium failed to initialise\n", stderr);
        exit(1);
    }
}

static void fail(const char *why) {
    fprintf(stderr, "%s\n", why);
    exit(2);
}

/* Prints `len` bytes as lowercase hex and a newline. */
static void put_hex(const unsigned char *bin, size_t len) {
    char *hex = malloc(len * 2 + 1);
    if (hex == NULL)
        fail("out of memory");
    sodium_bin2hex(hex, len * 2 + 1, bin, len);
    printf("%s\n", hex);
    free(hex);
}

/* Parses hex (surrounding whitespace allowed) into a new buffer; *len gets the byte count. */
static unsigned char *get_hex(const unsigned char *text, size_t text_len, size_t *len) {
    unsigned char *bin = malloc(text_len / 2 + 1);
    const char *end;
    if (bin == NULL)
        fail("out of memory");
    if (sodium_hex2bin(bin, text_len / 2 + 1, (const char *) text, text_len, " \t\r\n", len, &end) != 0 ||
        (size_t) (end - (const char *) text) != text_len)
        fail("the request is not hex");
    return bin;
}

/* The service key: 64 hex digits in SERVICE_KEY, or a fixed demonstration key. */
static void service_key(unsigned char key[crypto_secretbox_KEYBYTES]) {
    const char *hex = getenv("SERVICE_KEY");
    size_t len = 0;
    if (hex == NULL) {
        for (size_t i = 0; i < crypto_secretbox_KEYBYTES; i++)
            key[i] = (unsigned char) (0x5a ^ i);
        return;
    }
    if (sodium_hex2bin(key, crypto_secretbox_KEYBYTES, hex, strlen(hex), NULL, &len, NULL) != 0 ||
        len != crypto_secretbox_KEYBYTES)
        fail("SERVICE_KEY must be 64 hex digits");
}

#endif
