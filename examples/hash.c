/* hash.c - self-contained SHA-256 (FIPS 180-4) digest printer.
 * Usage: hash TEXT...   prints "<hex>  TEXT" for every argument
 *        hash           hashes all of stdin and prints "<hex>  -" */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sha256 {
    uint32_t state[8];
    uint64_t total_len;     /* message length in bytes so far */
    unsigned char block[64];
    size_t fill;            /* bytes currently waiting in block */
};

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
    0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
    0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
    0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
    0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static uint32_t rotr(uint32_t x, unsigned n)
{
    return (x >> n) | (x << (32 - n));
}

static uint32_t load_be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static void store_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static void sha256_init(struct sha256 *ctx)
{
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372,
                                   0xa54ff53a, 0x510e527f, 0x9b05688c,
                                   0x1f83d9ab, 0x5be0cd19};
    memcpy(ctx->state, iv, sizeof iv);
    ctx->total_len = 0;
    ctx->fill = 0;
}

/* Process one 64-byte block. */
static void sha256_compress(uint32_t state[8], const unsigned char *block)
{
    uint32_t w[64];
    uint32_t a, b, c, d, e, f, g, h;
    int i;

    for (i = 0; i < 16; i++)
        w[i] = load_be32(block + 4 * i);
    for (i = 16; i < 64; i++) {
        uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }

    a = state[0]; b = state[1]; c = state[2]; d = state[3];
    e = state[4]; f = state[5]; g = state[6]; h = state[7];
    for (i = 0; i < 64; i++) {
        uint32_t S1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t t1 = h + S1 + ch + K[i] + w[i];
        uint32_t S0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
        uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = S0 + maj;
        h = g; g = f; f = e; e = d + t1;
        d = c; c = b; b = a; a = t1 + t2;
    }
    state[0] += a; state[1] += b; state[2] += c; state[3] += d;
    state[4] += e; state[5] += f; state[6] += g; state[7] += h;
}

static void sha256_update(struct sha256 *ctx, const void *data, size_t len)
{
    const unsigned char *p = data;
    ctx->total_len += len;
    while (len > 0) {
        size_t take = 64 - ctx->fill;
        if (take > len)
            take = len;
        memcpy(ctx->block + ctx->fill, p, take);
        ctx->fill += take;
        p += take;
        len -= take;
        if (ctx->fill == 64) {
            sha256_compress(ctx->state, ctx->block);
            ctx->fill = 0;
        }
    }
}

static void sha256_final(struct sha256 *ctx, unsigned char digest[32])
{
    uint64_t bits = ctx->total_len * 8;
    int i;

    ctx->block[ctx->fill++] = 0x80;
    if (ctx->fill > 56) {
        memset(ctx->block + ctx->fill, 0, 64 - ctx->fill);
        sha256_compress(ctx->state, ctx->block);
        ctx->fill = 0;
    }
    memset(ctx->block + ctx->fill, 0, 56 - ctx->fill);
    for (i = 0; i < 8; i++)
        ctx->block[56 + i] = (unsigned char)(bits >> (56 - 8 * i));
    sha256_compress(ctx->state, ctx->block);
    for (i = 0; i < 8; i++)
        store_be32(digest + 4 * i, ctx->state[i]);
}

static void print_digest(const unsigned char digest[32], const char *label)
{
    static const char hex[] = "0123456789abcdef";
    char line[65];
    for (int i = 0; i < 32; i++) {
        line[2 * i] = hex[digest[i] >> 4];
        line[2 * i + 1] = hex[digest[i] & 0x0f];
    }
    line[64] = '\0';
    printf("%s  %s\n", line, label);
}

static int hash_stream(FILE *in, unsigned char digest[32])
{
    struct sha256 ctx;
    unsigned char chunk[4096];
    size_t n;

    sha256_init(&ctx);
    while ((n = fread(chunk, 1, sizeof chunk, in)) > 0)
        sha256_update(&ctx, chunk, n);
    if (ferror(in))
        return -1;
    sha256_final(&ctx, digest);
    return 0;
}

int main(int argc, char **argv)
{
    unsigned char digest[32];

    if (argc == 1) {
        if (hash_stream(stdin, digest) != 0) {
            fprintf(stderr, "hash: error reading stdin\n");
            return 1;
        }
        print_digest(digest, "-");
    } else {
        for (int i = 1; i < argc; i++) {
            struct sha256 ctx;
            sha256_init(&ctx);
            sha256_update(&ctx, argv[i], strlen(argv[i]));
            sha256_final(&ctx, digest);
            print_digest(digest, argv[i]);
        }
    }
    return fflush(stdout) == 0 ? 0 : 1;
}
