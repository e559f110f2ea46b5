/* interp.c - tiny integer expression interpreter (recursive descent).
 * Usage: interp < program   where each line is `let NAME = EXPR`, `print EXPR`,
 *        blank, or a `#` comment; EXPR uses + - * / % ( ) unary -, fib/gcd/abs. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LINE 1024
#define MAX_VARS 64
#define MAX_NAME 32
#define MAX_DEPTH 200
#define MAX_ARGS 2

static const char *cur;     /* parse position within the current line */
static int line_no, depth;  /* current input line; parser nesting depth */
static struct { char name[MAX_NAME]; int64_t value; } vars[MAX_VARS];
static int nvars;

static _Noreturn void die(const char *msg)
{
    fflush(stdout);
    fprintf(stderr, "error: line %d: %s\n", line_no, msg);
    exit(1);
}

static _Noreturn void die_name(const char *what, const char *name)
{
    char msg[80];
    snprintf(msg, sizeof msg, "%s '%s'", what, name);
    die(msg);
}

/* Binary operators, dispatched through a table of function pointers.
 * Wrapping arithmetic is done in uint64_t to avoid signed overflow. */
static int64_t op_add(int64_t a, int64_t b) { return (int64_t)((uint64_t)a + (uint64_t)b); }
static int64_t op_sub(int64_t a, int64_t b) { return (int64_t)((uint64_t)a - (uint64_t)b); }
static int64_t op_mul(int64_t a, int64_t b) { return (int64_t)((uint64_t)a * (uint64_t)b); }
static int64_t op_div(int64_t a, int64_t b)
{
    if (b == 0)
        die("division by zero");
    return b == -1 ? op_sub(0, a) : a / b; /* INT64_MIN / -1 wraps */
}
static int64_t op_mod(int64_t a, int64_t b)
{
    if (b == 0)
        die("division by zero");
    return b == -1 ? 0 : a % b;
}

static const char op_chars[] = "+-*/%";
static int64_t (*const ops[])(int64_t, int64_t) = {op_add, op_sub, op_mul, op_div, op_mod};

/* Builtin functions, looked up by name. */
static int64_t fib_rec(int64_t n) { return n < 2 ? n : fib_rec(n - 1) + fib_rec(n - 2); }
static int64_t bi_fib(const int64_t *a)
{
    if (a[0] < 0 || a[0] > 35)
        die("fib: argument out of range 0..35");
    return fib_rec(a[0]);
}
static uint64_t mag(int64_t v) { return v < 0 ? 0 - (uint64_t)v : (uint64_t)v; }
static uint64_t gcd_rec(uint64_t a, uint64_t b) { return b == 0 ? a : gcd_rec(b, a % b); }
static int64_t bi_gcd(const int64_t *a) { return (int64_t)gcd_rec(mag(a[0]), mag(a[1])); }
static int64_t bi_abs(const int64_t *a) { return (int64_t)mag(a[0]); }

static const struct builtin {
    const char *name;
    int arity;
    int64_t (*fn)(const int64_t *args);
} builtins[] = {{"fib", 1, bi_fib}, {"gcd", 2, bi_gcd}, {"abs", 1, bi_abs}};

static int is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int is_digit(int c) { return c >= '0' && c <= '9'; }

static void skip_ws(void)
{
    while (*cur == ' ' || *cur == '\t' || *cur == '\r' || *cur == '\n')
        cur++;
}

static void read_name(char out[MAX_NAME])
{
    size_t n = 0;
    while (is_alpha(*cur) || is_digit(*cur)) {
        if (n + 1 >= MAX_NAME)
            die("name too long");
        out[n++] = *cur++;
    }
    out[n] = '\0';
}

static void expect(char c)
{
    char text[2] = {c, '\0'};
    skip_ws();
    if (*cur != c)
        die_name("syntax error: expected", text);
    cur++;
}

static int64_t *lookup_var(const char *name)
{
    for (int i = 0; i < nvars; i++)
        if (strcmp(vars[i].name, name) == 0)
            return &vars[i].value;
    return NULL;
}

static int64_t parse_expr(void);

/* Called with `cur` just past "name(": parse arguments and dispatch. */
static int64_t call_builtin(const char *name)
{
    int64_t args[MAX_ARGS];
    const struct builtin *fn = NULL;
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
        if (strcmp(builtins[i].name, name) == 0)
            fn = &builtins[i];
    if (!fn)
        die_name("unknown function", name);
    for (int i = 0; i < fn->arity; i++) {
        if (i > 0)
            expect(',');
        args[i] = parse_expr();
    }
    expect(')');
    return fn->fn(args);
}

static int64_t parse_primary(void)
{
    skip_ws();
    if (*cur == '(') {
        cur++;
        int64_t v = parse_expr();
        expect(')');
        return v;
    }
    if (is_digit(*cur)) {
        uint64_t v = 0;
        while (is_digit(*cur)) {
            uint64_t d = (uint64_t)(*cur++ - '0');
            if (v > ((uint64_t)INT64_MAX - d) / 10)
                die("number too large");
            v = v * 10 + d;
        }
        return (int64_t)v;
    }
    if (is_alpha(*cur)) {
        char name[MAX_NAME];
        read_name(name);
        skip_ws();
        if (*cur == '(') {
            cur++;
            return call_builtin(name);
        }
        int64_t *slot = lookup_var(name);
        if (!slot)
            die_name("unknown variable", name);
        return *slot;
    }
    die("syntax error: expected a value");
}

/* Every operand passes through here, so this bounds recursion depth. */
static int64_t parse_unary(void)
{
    int64_t v;
    if (++depth > MAX_DEPTH)
        die("expression too deeply nested");
    skip_ws();
    if (*cur == '-') {
        cur++;
        v = op_sub(0, parse_unary());
    } else {
        v = parse_primary();
    }
    depth--;
    return v;
}

/* Apply left-associative binary operators from `allowed` over `operand`. */
static int64_t parse_binary(const char *allowed, int64_t (*operand)(void))
{
    int64_t acc = operand();
    for (;;) {
        skip_ws();
        if (*cur == '\0' || !strchr(allowed, *cur))
            return acc;
        int idx = (int)(strchr(op_chars, *cur++) - op_chars);
        acc = ops[idx](acc, operand());
    }
}

static int64_t parse_term(void) { return parse_binary("*/%", parse_unary); }
static int64_t parse_expr(void) { return parse_binary("+-", parse_term); }

static void run_line(void)
{
    char word[MAX_NAME], name[MAX_NAME] = "";
    int64_t v, *slot;
    int is_let;
    skip_ws();
    if (*cur == '\0' || *cur == '#')
        return;
    read_name(word);
    is_let = strcmp(word, "let") == 0;
    if (!is_let && strcmp(word, "print") != 0)
        die("syntax error: expected 'let' or 'print'");
    if (is_let) {
        skip_ws();
        if (!is_alpha(*cur))
            die("syntax error: expected variable name");
        read_name(name);
        expect('=');
    }
    v = parse_expr();
    skip_ws();
    if (*cur != '\0')
        die("syntax error: unexpected trailing input");
    if (!is_let) {
        printf("%lld\n", (long long)v);
        return;
    }
    slot = lookup_var(name);
    if (!slot) {
        if (nvars == MAX_VARS)
            die("too many variables");
        strcpy(vars[nvars].name, name);
        slot = &vars[nvars++].value;
    }
    *slot = v;
}

int main(void)
{
    char line[MAX_LINE];
    while (fgets(line, sizeof line, stdin)) {
        line_no++;
        if (!strchr(line, '\n') && !feof(stdin))
            die("line too long");
        cur = line;
        depth = 0;
        run_line();
    }
    return fflush(stdout) == 0 ? 0 : 1;
}
