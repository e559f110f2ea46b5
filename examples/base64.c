/* base64.c - RFC 4648 base64 encoder/decoder filter (stdin -> stdout).
 * Usage: base64        encode stdin, print one line followed by '\n'
 *        base64 -d     decode stdin (line breaks ignored); exit 1 on bad input */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char ALPHABET[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Growable byte buffer holding the whole of stdin. */
struct buffer {
    unsigned char *data;
    size_t len;
    size_t cap;
};

static int buffer_push(struct buffer *b, const unsigned char *src, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        unsigned char *p = realloc(b->data, cap);
        if (!p)
            return -1;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, src, n);
    b->len += n;
    return 0;
}

static int read_all(FILE *in, struct buffer *b)
{
    unsigned char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, in)) > 0) {
        if (buffer_push(b, chunk, n) != 0)
            return -1;
    }
    return ferror(in) ? -1 : 0;
}

/* Encode 1..3 input bytes into exactly 4 output characters. */
static void encode_block(const unsigned char *in, size_t n, char out[4])
{
    uint32_t v = (uint32_t)in[0] << 16;
    if (n > 1)
        v |= (uint32_t)in[1] << 8;
    if (n > 2)
        v |= (uint32_t)in[2];
    out[0] = ALPHABET[(v >> 18) & 0x3f];
    out[1] = ALPHABET[(v >> 12) & 0x3f];
    out[2] = n > 1 ? ALPHABET[(v >> 6) & 0x3f] : '=';
    out[3] = n > 2 ? ALPHABET[v & 0x3f] : '=';
}

static int encode(const struct buffer *b, FILE *out)
{
    char quad[4];
    for (size_t i = 0; i < b->len; i += 3) {
        size_t n = b->len - i < 3 ? b->len - i : 3;
        encode_block(b->data + i, n, quad);
        if (fwrite(quad, 1, 4, out) != 4)
            return -1;
    }
    return fputc('\n', out) == EOF ? -1 : 0;
}

/* Map one alphabet character to its 6-bit value, or -1 if invalid. */
static int decode_char(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Decode one 4-character group; returns number of bytes produced or -1. */
static int decode_block(const char q[4], int is_last, unsigned char out[3])
{
    int pad = 0;
    int v[4];
    for (int i = 0; i < 4; i++) {
        if (q[i] == '=') {
            if (!is_last || i < 2)
                return -1;
            pad++;
            v[i] = 0;
        } else {
            if (pad)
                return -1; /* data after padding */
            v[i] = decode_char((unsigned char)q[i]);
            if (v[i] < 0)
                return -1;
        }
    }
    uint32_t w = ((uint32_t)v[0] << 18) | ((uint32_t)v[1] << 12) |
                 ((uint32_t)v[2] << 6) | (uint32_t)v[3];
    out[0] = (unsigned char)(w >> 16);
    out[1] = (unsigned char)(w >> 8);
    out[2] = (unsigned char)w;
    return 3 - pad;
}

/* Decode everything into memory first so bad input produces no output. */
static int decode(const struct buffer *b, FILE *out)
{
    char q[4];
    int fill = 0, rc = 0;
    size_t total = 0, seen = 0, produced = 0;
    unsigned char *bytes;

    for (size_t i = 0; i < b->len; i++)
        if (b->data[i] != '\n' && b->data[i] != '\r')
            total++;
    if (total % 4 != 0)
        return -1;
    bytes = malloc(total / 4 * 3 + 1);
    if (!bytes)
        return -1;

    for (size_t i = 0; i < b->len && rc == 0; i++) {
        char c = (char)b->data[i];
        if (c == '\n' || c == '\r')
            continue;
        q[fill++] = c;
        seen++;
        if (fill == 4) {
            int n = decode_block(q, seen == total, bytes + produced);
            if (n < 0)
                rc = -1;
            else
                produced += (size_t)n;
            fill = 0;
        }
    }
    if (rc == 0 && fwrite(bytes, 1, produced, out) != produced)
        rc = -1;
    free(bytes);
    return rc;
}

int main(int argc, char **argv)
{
    int decoding = 0;
    struct buffer in = {NULL, 0, 0};
    int rc;

    if (argc == 2 && strcmp(argv[1], "-d") == 0) {
        decoding = 1;
    } else if (argc != 1) {
        fprintf(stderr, "usage: base64 [-d]\n");
        return 2;
    }
    if (read_all(stdin, &in) != 0) {
        fprintf(stderr, "base64: read error\n");
        free(in.data);
        return 1;
    }
    rc = decoding ? decode(&in, stdout) : encode(&in, stdout);
    free(in.data);
    if (rc != 0) {
        fprintf(stderr, "base64: %s\n",
                decoding ? "invalid input" : "write error");
        return 1;
    }
    return fflush(stdout) == 0 ? 0 : 1;
}
