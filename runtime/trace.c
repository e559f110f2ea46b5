/* Dispatch tracing: builds with tracing record (dispatcher id, variant) pairs and hand them to
 * the host in batches through the `mewe.trace` import. Part of discriminator.c in a
 * whole-program build; its own archive member under separate compilation, so only traced
 * programs link it. */
#include <stdint.h>

#define TRACE_CAPACITY 2048u
__attribute__((import_module("mewe"), import_name("trace"))) void mewe_host_trace(const uint32_t *pairs, uint32_t count);
static uint32_t trace_buffer[2 * TRACE_CAPACITY];
static uint32_t trace_count;

__attribute__((export_name("mewe_trace_flush"))) void mewe_trace_flush(void) {
    if (trace_count)
        mewe_host_trace(trace_buffer, trace_count);
    trace_count = 0;
}

/* Called by every dispatcher of a traced build with its id and the variant it takes. */
__attribute__((always_inline)) void __mewe_trace(uint32_t id, uint32_t k) {
    if (trace_count == TRACE_CAPACITY)
        mewe_trace_flush();
    trace_buffer[2 * trace_count] = id;
    trace_buffer[2 * trace_count + 1] = k;
    trace_count++;
}
