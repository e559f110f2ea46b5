/* mewe's discriminator: the random index every dispatcher asks for, linked into each
 * multivariant module. A xoshiro128++ generator in linear memory, range-reduced by
 * multiply-shift, seeded on first use from WASI random_get and re-seeded every
 * MEWE_RESEED draws. The policy is fixed at build time (MEWE_POLICY) and can be changed by
 * the host before it runs the module, through the exported mewe_configure. */
#include <stdint.h>

#define MEWE_RANDOM 0u
#define MEWE_SEEDED 1u
#define MEWE_PINNED 2u
#define MEWE_HOST 3u

#ifndef MEWE_POLICY
#define MEWE_POLICY MEWE_RANDOM
#endif
#ifndef MEWE_POLICY_ARG
#define MEWE_POLICY_ARG 0ull
#endif
#ifndef MEWE_RESEED
#define MEWE_RESEED 65536u
#endif

__attribute__((import_module("wasi_snapshot_preview1"), import_name("random_get")))
uint16_t mewe_wasi_random_get(uint8_t *buf, uint32_t len);

#ifdef MEWE_HOST_RNG
__attribute__((import_module("mewe"), import_name("rand"))) uint32_t mewe_host_rand(void);
#endif

/* Three ways to build this file. A whole-program build (the default) compiles it all into
 * the program, state static. Separate compilation splits it: every unit gets only the fast
 * path (MEWE_FAST_PATH_ONLY), which reaches the state and slow path the final link takes
 * from the runtime archive (MEWE_RUNTIME_OBJECT). */
#if defined(MEWE_FAST_PATH_ONLY)
extern uint32_t mewe_state[4];
extern uint32_t mewe_budget;
uint32_t mewe_choose_slow(uint32_t n);
#else
#ifdef MEWE_RUNTIME_OBJECT
#define SHARED __attribute__((visibility("hidden")))
#else
#define SHARED static
#endif
SHARED uint32_t mewe_state[4];
/* Draws left before the slow path. 0 sends every draw there: before seeding, when a
 * re-seed is due, and always under the pinned and host policies. */
SHARED uint32_t mewe_budget;
static uint32_t policy = MEWE_POLICY;
static uint64_t policy_arg = MEWE_POLICY_ARG;
#endif

static inline uint32_t rotl(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }

static inline uint32_t next(void) {
    uint32_t result = rotl(mewe_state[0] + mewe_state[3], 7) + mewe_state[0];
    uint32_t t = mewe_state[1] << 9;
    mewe_state[2] ^= mewe_state[0];
    mewe_state[3] ^= mewe_state[1];
    mewe_state[1] ^= mewe_state[2];
    mewe_state[0] ^= mewe_state[3];
    mewe_state[2] ^= t;
    mewe_state[3] = rotl(mewe_state[3], 11);
    return result;
}

/* Lemire's multiply-shift: maps 32 random bits onto [0, n) without a division. */
static inline uint32_t reduce(uint32_t r, uint32_t n) { return (uint32_t)(((uint64_t)r * n) >> 32); }

#ifndef MEWE_FAST_PATH_ONLY
static void seed_from(uint64_t seed) {
    for (int i = 0; i < 4; i++) { /* splitmix64 steps spread any seed over the whole mewe_state */
        uint64_t z = (seed += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        mewe_state[i] = (uint32_t)(z ^ (z >> 31));
    }
}

static void seed_from_host(void) {
    if (mewe_wasi_random_get((uint8_t *)mewe_state, sizeof mewe_state) != 0 ||
        (mewe_state[0] | mewe_state[1] | mewe_state[2] | mewe_state[3]) == 0)
        __builtin_trap(); /* no entropy: refuse to run predictably */
}

__attribute__((noinline)) SHARED uint32_t mewe_choose_slow(uint32_t n) {
    switch (policy) {
    case MEWE_PINNED:
        return (uint32_t)(policy_arg % n);
#ifdef MEWE_HOST_RNG
    case MEWE_HOST:
        return reduce(mewe_host_rand(), n);
#endif
    case MEWE_SEEDED:
        seed_from(policy_arg);
        policy = MEWE_RANDOM; /* one fixed stream from here on, never re-seeded */
        mewe_budget = UINT32_MAX;
        break;
    default:
        seed_from_host();
        mewe_budget = MEWE_RESEED;
        break;
    }
    mewe_budget--;
    return reduce(next(), n);
}

#endif

/* The dispatchers' entry: a variant index in [0, n). Inlined into every dispatcher. */
__attribute__((always_inline)) uint32_t __mewe_choose(uint32_t n) {
    if (__builtin_expect(mewe_budget == 0, 0))
        return mewe_choose_slow(n);
    mewe_budget--;
    return reduce(next(), n);
}

#ifndef MEWE_FAST_PATH_ONLY
/* Slot dispatchers (--rerandomize every:N and request) keep each function's variant in a
 * slot. `held` is the variant in its low 8 bits and, above them, the calls of the function left
 * before it is re-drawn; a dispatcher takes 256 off and finds it stale when fewer than 256 were
 * left (a zero slot, at instance start, is stale), so a call costs a load, a subtract, a store
 * and a branch the CPU predicts. Every slot drawn is on a list; under every:N the module's epoch
 * ends when the lives used up by all functions add up to a random run of about N more
 * dispatches, and then every listed slot is zeroed, so a function called rarely is re-drawn
 * about every N dispatches of the module too. The list holds only slots drawn since the last
 * epoch, each once, so an epoch's end costs no more than the draws that led to it: re-drawing
 * stays O(1) per call, whatever the number of functions. */
struct mewe_slot {
    uint64_t held;
    struct mewe_slot *next; /* on the list when nonzero */
    uint32_t life;          /* the calls it was drawn for */
};

static struct mewe_slot *drawn; /* slots drawn this epoch; the last one points to `tail` */
static struct mewe_slot tail;
static uint64_t used, next_epoch; /* lives used up; where the next epoch begins */

/* Every listed slot is stale from here on. */
static void new_epoch(void) {
    for (struct mewe_slot *s = drawn, *next; s && s != &tail; s = next) {
        next = s->next;
        s->held = 0;
        s->next = 0;
    }
    drawn = 0;
}

/* A random run length with mean `period`, 1 to 2*period-1 (so an observer cannot count to
 * the next re-draw); a pinned policy's draws are all alike, so a fixed one then. */
static uint32_t lifetime(uint32_t period) {
    return policy == MEWE_PINNED ? period : 1 + __mewe_choose(2 * period - 1);
}

/* Draws the function's variant and its life: `period` calls (every:N), or for `period` 0
 * (request) the rest of the instance. */
__attribute__((noinline, cold, visibility("hidden"))) uint64_t __mewe_redraw(struct mewe_slot *s, uint32_t n,
                                                                             uint32_t period) {
    uint64_t life = 1ull << 48;
    if (period) {
        if (s->next) { /* listed: its own calls used its life up */
            used += s->life;
            if (used >= next_epoch) {
                new_epoch();
                next_epoch = used + lifetime(period);
            }
        }
        life = lifetime(period);
    }
    if (!s->next) {
        s->next = drawn ? drawn : &tail;
        drawn = s;
    }
    s->life = (uint32_t)life;
    return s->held = life << 8 | __mewe_choose(n);
}

/* Host control, before the module runs: 0 random, 1 seeded (seed = lo | hi << 32),
 * 2 pinned (variant lo mod n), 3 host (only in modules built with the host policy).
 * Returns 0, or -1 for a policy this module cannot follow. */
__attribute__((export_name("mewe_configure"))) int32_t mewe_configure(uint32_t kind, uint32_t lo, uint32_t hi) {
#ifndef MEWE_HOST_RNG
    if (kind == MEWE_HOST)
        return -1;
#endif
    if (kind > MEWE_HOST)
        return -1;
    policy = kind;
    policy_arg = (uint64_t)lo | (uint64_t)hi << 32;
    mewe_budget = 0;
    new_epoch(); /* every slot drawn before is stale now, in every mode */
    return 0;
}

#if defined(MEWE_TRACE) && !defined(MEWE_RUNTIME_OBJECT)
#include "trace.c" /* separate compilation puts it in its own archive member */
#endif
#endif /* !MEWE_FAST_PATH_ONLY */
