# The exception tag longjmp throws: wasi-libc's setjmp runtime (setjmp/wasm32/rt.c) and the
# code LLVM makes of setjmp calls (-wasm-enable-sjlj) refer to it, and the libc zig ships does
# not define it. One i32 payload: a pointer to the jmp_buf's (env, value) pair.
	.globl __c_longjmp
	.tagtype __c_longjmp i32
__c_longjmp:
