/* sort.c - line sorter: qsort() with a comparator picked from a function
 * pointer table, cross-checked against a hand-written merge sort.
 * Usage: sort [-n] [-r] < input    (-n numeric by leading integer, -r reverse) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct line {
    char *text;
    size_t len;
};

typedef int (*cmp_fn)(const void *, const void *);

/* Byte-wise comparison; a proper prefix sorts first. */
static int cmp_lex(const void *pa, const void *pb)
{
    const struct line *a = pa, *b = pb;
    size_t n = a->len < b->len ? a->len : b->len;
    int r = memcmp(a->text, b->text, n);
    if (r != 0)
        return r < 0 ? -1 : 1;
    return (a->len > b->len) - (a->len < b->len);
}

/* Leading integer of a line: optional blanks, optional sign, digits.
 * Kept as a digit string so arbitrarily long numbers compare exactly. */
struct number {
    int sign;           /* -1, 0 or +1 */
    const char *digits; /* without leading zeros */
    size_t ndigits;
};

static struct number parse_number(const struct line *l)
{
    struct number num = {0, "", 0};
    size_t i = 0;
    int negative = 0;
    while (i < l->len && (l->text[i] == ' ' || l->text[i] == '\t'))
        i++;
    if (i < l->len && (l->text[i] == '-' || l->text[i] == '+'))
        negative = l->text[i++] == '-';
    while (i < l->len && l->text[i] == '0')
        i++;
    num.digits = l->text + i;
    while (i < l->len && l->text[i] >= '0' && l->text[i] <= '9') {
        num.ndigits++;
        i++;
    }
    if (num.ndigits > 0)
        num.sign = negative ? -1 : 1;
    return num;
}

static int compare_magnitude(const struct number *a, const struct number *b)
{
    if (a->ndigits != b->ndigits)
        return a->ndigits < b->ndigits ? -1 : 1;
    int r = memcmp(a->digits, b->digits, a->ndigits);
    return (r > 0) - (r < 0);
}

/* Numeric order; equal numbers fall back to byte order so the result is
 * a total order and does not depend on how qsort treats ties. */
static int cmp_num(const void *pa, const void *pb)
{
    struct number a = parse_number(pa), b = parse_number(pb);
    int r;
    if (a.sign != b.sign)
        r = a.sign < b.sign ? -1 : 1;
    else
        r = a.sign * compare_magnitude(&a, &b);
    return r != 0 ? r : cmp_lex(pa, pb);
}

static int cmp_lex_rev(const void *a, const void *b) { return cmp_lex(b, a); }
static int cmp_num_rev(const void *a, const void *b) { return cmp_num(b, a); }

/* Indexed by (numeric ? 1 : 0) + (reverse ? 2 : 0). */
static const cmp_fn comparators[4] = {cmp_lex, cmp_num, cmp_lex_rev, cmp_num_rev};

static void merge_sort(struct line *v, struct line *tmp, size_t n, cmp_fn cmp)
{
    size_t mid = n / 2, i = 0, j = mid, k = 0;
    if (n < 2)
        return;
    merge_sort(v, tmp, mid, cmp);
    merge_sort(v + mid, tmp, n - mid, cmp);
    while (i < mid && j < n)
        tmp[k++] = cmp(&v[j], &v[i]) < 0 ? v[j++] : v[i++];
    while (i < mid)
        tmp[k++] = v[i++];
    while (j < n)
        tmp[k++] = v[j++];
    memcpy(v, tmp, n * sizeof *v);
}

static int read_lines(FILE *in, struct line **out, size_t *count)
{
    struct line *lines = NULL;
    size_t n = 0, cap = 0;
    int c;
    while ((c = getc(in)) != EOF) {
        size_t len = 0, tcap = 64;
        char *text = malloc(tcap);
        if (!text)
            return -1;
        while (c != EOF && c != '\n') {
            if (len + 1 >= tcap) {
                char *grown = realloc(text, tcap *= 2);
                if (!grown) {
                    free(text);
                    return -1;
                }
                text = grown;
            }
            text[len++] = (char)c;
            c = getc(in);
        }
        text[len] = '\0';
        if (n == cap) {
            struct line *grown = realloc(lines, (cap = cap ? cap * 2 : 16) * sizeof *lines);
            if (!grown) {
                free(text);
                return -1;
            }
            lines = grown;
        }
        lines[n].text = text;
        lines[n++].len = len;
        if (c == EOF)
            break;
    }
    *out = lines;
    *count = n;
    return ferror(in) ? -1 : 0;
}

static int parse_args(int argc, char **argv, int *numeric, int *reverse)
{
    for (int i = 1; i < argc; i++) {
        const char *p = argv[i];
        if (p[0] != '-' || p[1] == '\0')
            return -1;
        for (p++; *p; p++) {
            if (*p == 'n')
                *numeric = 1;
            else if (*p == 'r')
                *reverse = 1;
            else
                return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    int numeric = 0, reverse = 0, status = 0;
    struct line *lines = NULL, *check = NULL, *tmp = NULL;
    size_t n = 0, i;

    if (parse_args(argc, argv, &numeric, &reverse) != 0) {
        fprintf(stderr, "usage: sort [-n] [-r]\n");
        return 2;
    }
    if (read_lines(stdin, &lines, &n) != 0) {
        fprintf(stderr, "sort: cannot read input\n");
        return 1;
    }
    cmp_fn cmp = comparators[numeric + 2 * reverse];

    check = malloc((n ? n : 1) * sizeof *check);
    tmp = malloc((n ? n : 1) * sizeof *tmp);
    if (!check || !tmp) {
        fprintf(stderr, "sort: out of memory\n");
        return 1;
    }
    if (n > 0) {
        memcpy(check, lines, n * sizeof *lines);
        qsort(lines, n, sizeof *lines, cmp);
        merge_sort(check, tmp, n, cmp);
    }

    for (i = 0; i < n; i++) {
        if (cmp_lex(&lines[i], &check[i]) != 0) {
            fprintf(stderr, "sort: verification failed at line %zu\n", i + 1);
            status = 3;
            break;
        }
    }
    for (i = 0; status == 0 && i < n; i++) {
        fwrite(lines[i].text, 1, lines[i].len, stdout);
        putchar('\n');
    }
    for (i = 0; i < n; i++)
        free(lines[i].text);
    free(lines);
    free(check);
    free(tmp);
    if (fflush(stdout) != 0)
        status = 1;
    return status;
}
