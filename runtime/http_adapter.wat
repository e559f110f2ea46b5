;; mewe's wasi:http adapter: turns a WASI preview1 command module into a wasi:http/proxy
;; component (`mewe build --emit http`), by `wasm-tools component new --adapt
;; wasi_snapshot_preview1=<this>`. Every request instantiates the component afresh (wasi-libc's
;; _start runs once) and calls `handle`, which:
;;   - reads the request body into a buffer that is the program's stdin (fd 0);
;;   - turns the query's `arg=` values (percent-decoded, '+' a space) into argv[1..];
;;   - runs the program's _start; stdout (fd 1) and stderr (fd 2) go to buffers;
;;   - answers 200 with stdout when the program returns or exits 0, else 500 with stderr.
;; `proc_exit` answers first and then traps, since preview1's exit does not return and this
;; adapter has no way to unwind the program's stack; hosts that isolate requests (wasmtime
;; serve, `jco serve --isolate-requests`) keep serving. A trap before any answer is the host's
;; to report (a 5xx). There are no files, environment or preopens (every other preview1
;; function is here and fails as it would without them); random_get and the clocks
;; come from wasi:random and wasi:clocks. Every answer carries `x-mewe-exit` (the exit status).
;;
;; Traced builds (`--trace`): the module's `mewe.trace` import is renamed
;; `wasi_snapshot_preview1.mewe_trace` (mewe.component) and lands here; the dispatch pairs are
;; hashed with SHA-256 as they arrive, and the answer carries `x-mewe-trace` (the hex digest)
;; and `x-mewe-trace-length` (pairs), the same values `mewe serve` sends. For other builds
;; mewe.component replaces the `mewe_trace_flush` import by an empty function and $traced by 0.
;;
;; The adapter shares the program's memory ("env" "memory"): its state lives in pages it grows
;; itself (wasi-libc's malloc never reuses pages grown by another), so neither can overwrite
;; the other. Lists the host returns are allocated through `cabi_import_realloc`, a bump
;; allocator reset after each use. Canonical-ABI layouts used below (wasm32): option<string>
;; and result<list<u8>, _> as {u8 tag; i32 ptr @4; i32 len @8}; result<own<T>, _> as {u8 tag;
;; i32 handle @4}; response-outparam.set's result<outgoing-response, error-code> flattened to
;; (i32 tag, i32, i32, i64, i32 x4).
(module
  (import "env" "memory" (memory 0))
  (import "__main_module__" "_start" (func $start))
  (import "wasi:http/types@0.2.3" "[method]incoming-request.path-with-query" (func $path_with_query (param i32 i32)))
  (import "wasi:http/types@0.2.3" "[method]incoming-request.consume" (func $consume (param i32 i32)))
  (import "wasi:http/types@0.2.3" "[method]incoming-body.stream" (func $body_stream (param i32 i32)))
  (import "wasi:http/types@0.2.3" "[resource-drop]incoming-body" (func $drop_incoming_body (param i32)))
  (import "wasi:http/types@0.2.3" "[constructor]fields" (func $fields_new (result i32)))
  (import "wasi:http/types@0.2.3" "[constructor]outgoing-response" (func $response_new (param i32) (result i32)))
  (import "wasi:http/types@0.2.3" "[method]outgoing-response.set-status-code" (func $set_status (param i32 i32) (result i32)))
  (import "wasi:http/types@0.2.3" "[method]outgoing-response.body" (func $response_body (param i32 i32)))
  (import "wasi:http/types@0.2.3" "[method]outgoing-body.write" (func $body_write (param i32 i32)))
  (import "wasi:http/types@0.2.3" "[static]outgoing-body.finish" (func $body_finish (param i32 i32 i32 i32)))
  (import "wasi:http/types@0.2.3" "[static]response-outparam.set" (func $outparam_set (param i32 i32 i32 i32 i64 i32 i32 i32 i32)))
  (import "wasi:io/streams@0.2.3" "[method]input-stream.blocking-read" (func $blocking_read (param i32 i64 i32)))
  (import "wasi:io/streams@0.2.3" "[method]output-stream.blocking-write-and-flush" (func $write_flush (param i32 i32 i32 i32)))
  (import "wasi:io/streams@0.2.3" "[resource-drop]input-stream" (func $drop_input (param i32)))
  (import "wasi:io/streams@0.2.3" "[resource-drop]output-stream" (func $drop_output (param i32)))
  (import "wasi:random/random@0.2.3" "get-random-bytes" (func $random_bytes (param i64 i32)))
  (import "wasi:clocks/wall-clock@0.2.3" "now" (func $wall_now (param i32)))
  (import "wasi:clocks/monotonic-clock@0.2.3" "now" (func $mono_now (result i64)))
  (import "wasi:http/types@0.2.3" "[method]fields.append" (func $fields_append (param i32 i32 i32 i32 i32 i32)))
  (import "__main_module__" "mewe_trace_flush" (func $trace_flush))
  (global $traced i32 (i32.const 1))

  ;; state: a scratch area for return values, and growable buffers, all in pages this adapter grows
  (global $scratch (mut i32) (i32.const 0))
  (global $heap (mut i32) (i32.const 0))      ;; bump allocator for lists the host returns
  (global $heap_end (mut i32) (i32.const 0))
  (global $in_ptr (mut i32) (i32.const 0)) (global $in_len (mut i32) (i32.const 0)) (global $in_cap (mut i32) (i32.const 0))
  (global $in_pos (mut i32) (i32.const 0))
  (global $out_ptr (mut i32) (i32.const 0)) (global $out_len (mut i32) (i32.const 0)) (global $out_cap (mut i32) (i32.const 0))
  (global $err_ptr (mut i32) (i32.const 0)) (global $err_len (mut i32) (i32.const 0)) (global $err_cap (mut i32) (i32.const 0))
  (global $args_ptr (mut i32) (i32.const 0)) (global $args_len (mut i32) (i32.const 0)) (global $argc (mut i32) (i32.const 1))
  (global $outparam (mut i32) (i32.const -1))
  ;; the trace's SHA-256: bytes hashed so far. The scratch page holds, from offset 0: return
  ;; areas (0-255), the hash state H (256), the block (288), the schedule W (352), the round
  ;; constants K (608), the hex digest (864), a decimal number (960), header names (1024-1071)
  (global $sha_len (mut i64) (i64.const 0))

  (func $pages (param $bytes i32) (result i32)  ;; fresh memory of at least $bytes, page-aligned
    (local $old i32)
    (local.set $old (memory.grow (i32.shr_u (i32.add (local.get $bytes) (i32.const 65535)) (i32.const 16))))
    (if (i32.eq (local.get $old) (i32.const -1)) (then unreachable))
    (i32.shl (local.get $old) (i32.const 16)))

  (func $init
    (if (i32.eqz (global.get $scratch))
      (then
        (global.set $scratch (call $pages (i32.const 65536)))
        (global.set $heap (call $pages (i32.const 131072)))
        (global.set $heap_end (i32.add (global.get $heap) (i32.const 131072)))
        (global.set $args_ptr (call $pages (i32.const 65536)))
        ;; argv[0] = "service"
        (i64.store (global.get $args_ptr) (i64.const 0x0065636976726573))
        (global.set $args_len (i32.const 8))
        ;; header names: "x-mewe-trace-length" (its first 12 bytes: "x-mewe-trace"), "x-mewe-exit"
        (i64.store offset=1024 (global.get $scratch) (i64.const 0x742d6577656d2d78))
        (i64.store offset=1032 (global.get $scratch) (i64.const 0x6e656c2d65636172))
        (i64.store offset=1040 (global.get $scratch) (i64.const 0x687467))
        (i64.store offset=1056 (global.get $scratch) (i64.const 0x652d6577656d2d78))
        (i64.store offset=1064 (global.get $scratch) (i64.const 0x746978))
        (call $sha_init))))

  ;; ---- SHA-256 (FIPS 180-4) of the dispatch trace ----
  (func $put8 (param $p i32) (param i32 i32 i32 i32 i32 i32 i32 i32)
    (i32.store offset=0 (local.get $p) (local.get 1)) (i32.store offset=4 (local.get $p) (local.get 2))
    (i32.store offset=8 (local.get $p) (local.get 3)) (i32.store offset=12 (local.get $p) (local.get 4))
    (i32.store offset=16 (local.get $p) (local.get 5)) (i32.store offset=20 (local.get $p) (local.get 6))
    (i32.store offset=24 (local.get $p) (local.get 7)) (i32.store offset=28 (local.get $p) (local.get 8)))

  (func $sha_init  ;; the initial hash value, then the 64 round constants
    (call $put8 (i32.add (global.get $scratch) (i32.const 256))
      (i32.const 0x6a09e667) (i32.const 0xbb67ae85) (i32.const 0x3c6ef372) (i32.const 0xa54ff53a) (i32.const 0x510e527f) (i32.const 0x9b05688c) (i32.const 0x1f83d9ab) (i32.const 0x5be0cd19))
    (call $put8 (i32.add (global.get $scratch) (i32.const 608))
      (i32.const 0x428a2f98) (i32.const 0x71374491) (i32.const 0xb5c0fbcf) (i32.const 0xe9b5dba5) (i32.const 0x3956c25b) (i32.const 0x59f111f1) (i32.const 0x923f82a4) (i32.const 0xab1c5ed5))
    (call $put8 (i32.add (global.get $scratch) (i32.const 640))
      (i32.const 0xd807aa98) (i32.const 0x12835b01) (i32.const 0x243185be) (i32.const 0x550c7dc3) (i32.const 0x72be5d74) (i32.const 0x80deb1fe) (i32.const 0x9bdc06a7) (i32.const 0xc19bf174))
    (call $put8 (i32.add (global.get $scratch) (i32.const 672))
      (i32.const 0xe49b69c1) (i32.const 0xefbe4786) (i32.const 0x0fc19dc6) (i32.const 0x240ca1cc) (i32.const 0x2de92c6f) (i32.const 0x4a7484aa) (i32.const 0x5cb0a9dc) (i32.const 0x76f988da))
    (call $put8 (i32.add (global.get $scratch) (i32.const 704))
      (i32.const 0x983e5152) (i32.const 0xa831c66d) (i32.const 0xb00327c8) (i32.const 0xbf597fc7) (i32.const 0xc6e00bf3) (i32.const 0xd5a79147) (i32.const 0x06ca6351) (i32.const 0x14292967))
    (call $put8 (i32.add (global.get $scratch) (i32.const 736))
      (i32.const 0x27b70a85) (i32.const 0x2e1b2138) (i32.const 0x4d2c6dfc) (i32.const 0x53380d13) (i32.const 0x650a7354) (i32.const 0x766a0abb) (i32.const 0x81c2c92e) (i32.const 0x92722c85))
    (call $put8 (i32.add (global.get $scratch) (i32.const 768))
      (i32.const 0xa2bfe8a1) (i32.const 0xa81a664b) (i32.const 0xc24b8b70) (i32.const 0xc76c51a3) (i32.const 0xd192e819) (i32.const 0xd6990624) (i32.const 0xf40e3585) (i32.const 0x106aa070))
    (call $put8 (i32.add (global.get $scratch) (i32.const 800))
      (i32.const 0x19a4c116) (i32.const 0x1e376c08) (i32.const 0x2748774c) (i32.const 0x34b0bcb5) (i32.const 0x391c0cb3) (i32.const 0x4ed8aa4a) (i32.const 0x5b9cca4f) (i32.const 0x682e6ff3))
    (call $put8 (i32.add (global.get $scratch) (i32.const 832))
      (i32.const 0x748f82ee) (i32.const 0x78a5636f) (i32.const 0x84c87814) (i32.const 0x8cc70208) (i32.const 0x90befffa) (i32.const 0xa4506ceb) (i32.const 0xbef9a3f7) (i32.const 0xc67178f2))
  )

  (func $bswap (param $x i32) (result i32)  ;; SHA-256 reads its words big-endian
    (i32.or (i32.and (i32.rotl (local.get $x) (i32.const 8)) (i32.const 0x00ff00ff))
            (i32.and (i32.rotr (local.get $x) (i32.const 8)) (i32.const 0xff00ff00))))

  (func $sha_block  ;; compress the 64-byte block into the state
    (local $s i32) (local $w i32) (local $i i32) (local $x i32) (local $y i32) (local $t1 i32) (local $t2 i32)
    (local $a i32) (local $b i32) (local $c i32) (local $d i32) (local $e i32) (local $f i32) (local $g i32) (local $h i32)
    (local.set $s (global.get $scratch))
    (local.set $w (i32.add (local.get $s) (i32.const 352)))
    ;; the message schedule; $i counts bytes (4 per word)
    (block $loaded (loop $load
      (br_if $loaded (i32.eq (local.get $i) (i32.const 64)))
      (i32.store (i32.add (local.get $w) (local.get $i))
                 (call $bswap (i32.load offset=288 (i32.add (local.get $s) (local.get $i)))))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $load)))
    (block $expanded (loop $expand  ;; W[t] = s1(W[t-2]) + W[t-7] + s0(W[t-15]) + W[t-16]
      (br_if $expanded (i32.eq (local.get $i) (i32.const 256)))
      (local.set $x (i32.load (i32.sub (i32.add (local.get $w) (local.get $i)) (i32.const 60))))
      (local.set $y (i32.load (i32.sub (i32.add (local.get $w) (local.get $i)) (i32.const 8))))
      (i32.store (i32.add (local.get $w) (local.get $i))
        (i32.add
          (i32.add (i32.load (i32.sub (i32.add (local.get $w) (local.get $i)) (i32.const 64)))
                   (i32.load (i32.sub (i32.add (local.get $w) (local.get $i)) (i32.const 28))))
          (i32.add (i32.xor (i32.xor (i32.rotr (local.get $x) (i32.const 7)) (i32.rotr (local.get $x) (i32.const 18)))
                            (i32.shr_u (local.get $x) (i32.const 3)))
                   (i32.xor (i32.xor (i32.rotr (local.get $y) (i32.const 17)) (i32.rotr (local.get $y) (i32.const 19)))
                            (i32.shr_u (local.get $y) (i32.const 10))))))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $expand)))
    (local.set $a (i32.load offset=256 (local.get $s))) (local.set $b (i32.load offset=260 (local.get $s)))
    (local.set $c (i32.load offset=264 (local.get $s))) (local.set $d (i32.load offset=268 (local.get $s)))
    (local.set $e (i32.load offset=272 (local.get $s))) (local.set $f (i32.load offset=276 (local.get $s)))
    (local.set $g (i32.load offset=280 (local.get $s))) (local.set $h (i32.load offset=284 (local.get $s)))
    (local.set $i (i32.const 0))
    (block $done (loop $round
      (br_if $done (i32.eq (local.get $i) (i32.const 256)))
      ;; T1 = h + S1(e) + Ch(e,f,g) + K[t] + W[t];  T2 = S0(a) + Maj(a,b,c)
      (local.set $t1
        (i32.add
          (i32.add (local.get $h)
                   (i32.xor (i32.xor (i32.rotr (local.get $e) (i32.const 6)) (i32.rotr (local.get $e) (i32.const 11)))
                            (i32.rotr (local.get $e) (i32.const 25))))
          (i32.add
            (i32.xor (i32.and (local.get $e) (local.get $f))
                     (i32.and (i32.xor (local.get $e) (i32.const -1)) (local.get $g)))
            (i32.add (i32.load offset=608 (i32.add (local.get $s) (local.get $i)))
                     (i32.load (i32.add (local.get $w) (local.get $i)))))))
      (local.set $t2
        (i32.add
          (i32.xor (i32.xor (i32.rotr (local.get $a) (i32.const 2)) (i32.rotr (local.get $a) (i32.const 13)))
                   (i32.rotr (local.get $a) (i32.const 22)))
          (i32.xor (i32.xor (i32.and (local.get $a) (local.get $b)) (i32.and (local.get $a) (local.get $c)))
                   (i32.and (local.get $b) (local.get $c)))))
      (local.set $h (local.get $g)) (local.set $g (local.get $f)) (local.set $f (local.get $e))
      (local.set $e (i32.add (local.get $d) (local.get $t1)))
      (local.set $d (local.get $c)) (local.set $c (local.get $b)) (local.set $b (local.get $a))
      (local.set $a (i32.add (local.get $t1) (local.get $t2)))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $round)))
    (i32.store offset=256 (local.get $s) (i32.add (i32.load offset=256 (local.get $s)) (local.get $a)))
    (i32.store offset=260 (local.get $s) (i32.add (i32.load offset=260 (local.get $s)) (local.get $b)))
    (i32.store offset=264 (local.get $s) (i32.add (i32.load offset=264 (local.get $s)) (local.get $c)))
    (i32.store offset=268 (local.get $s) (i32.add (i32.load offset=268 (local.get $s)) (local.get $d)))
    (i32.store offset=272 (local.get $s) (i32.add (i32.load offset=272 (local.get $s)) (local.get $e)))
    (i32.store offset=276 (local.get $s) (i32.add (i32.load offset=276 (local.get $s)) (local.get $f)))
    (i32.store offset=280 (local.get $s) (i32.add (i32.load offset=280 (local.get $s)) (local.get $g)))
    (i32.store offset=284 (local.get $s) (i32.add (i32.load offset=284 (local.get $s)) (local.get $h))))

  (func $sha_update (param $src i32) (param $n i32)
    (local $fill i32) (local $take i32)
    (block $done (loop $more
      (br_if $done (i32.eqz (local.get $n)))
      (local.set $fill (i32.wrap_i64 (i64.and (global.get $sha_len) (i64.const 63))))
      (local.set $take (i32.sub (i32.const 64) (local.get $fill)))
      (if (i32.lt_u (local.get $n) (local.get $take)) (then (local.set $take (local.get $n))))
      (memory.copy (i32.add (i32.add (global.get $scratch) (i32.const 288)) (local.get $fill))
                   (local.get $src) (local.get $take))
      (global.set $sha_len (i64.add (global.get $sha_len) (i64.extend_i32_u (local.get $take))))
      (local.set $src (i32.add (local.get $src) (local.get $take)))
      (local.set $n (i32.sub (local.get $n) (local.get $take)))
      (if (i32.eq (i32.add (local.get $fill) (local.get $take)) (i32.const 64)) (then (call $sha_block)))
      (br $more))))

  (func $sha_final  ;; pad, compress, and write the digest as 64 hex digits at 864
    (local $block i32) (local $fill i32) (local $bits i64) (local $i i32) (local $digit i32)
    (local.set $block (i32.add (global.get $scratch) (i32.const 288)))
    (local.set $bits (i64.shl (global.get $sha_len) (i64.const 3)))
    (local.set $fill (i32.wrap_i64 (i64.and (global.get $sha_len) (i64.const 63))))
    (i32.store8 (i32.add (local.get $block) (local.get $fill)) (i32.const 0x80))
    (local.set $fill (i32.add (local.get $fill) (i32.const 1)))
    (if (i32.gt_u (local.get $fill) (i32.const 56))
      (then
        (memory.fill (i32.add (local.get $block) (local.get $fill)) (i32.const 0) (i32.sub (i32.const 64) (local.get $fill)))
        (call $sha_block)
        (local.set $fill (i32.const 0))))
    (memory.fill (i32.add (local.get $block) (local.get $fill)) (i32.const 0) (i32.sub (i32.const 56) (local.get $fill)))
    (i32.store offset=56 (local.get $block) (call $bswap (i32.wrap_i64 (i64.shr_u (local.get $bits) (i64.const 32)))))
    (i32.store offset=60 (local.get $block) (call $bswap (i32.wrap_i64 (local.get $bits))))
    (call $sha_block)
    (block $done (loop $hex  ;; nibble $i of the state, most significant first
      (br_if $done (i32.eq (local.get $i) (i32.const 64)))
      (local.set $digit
        (i32.and (i32.shr_u (i32.load offset=256 (i32.add (global.get $scratch) (i32.shl (i32.shr_u (local.get $i) (i32.const 3)) (i32.const 2))))
                            (i32.sub (i32.const 28) (i32.shl (i32.and (local.get $i) (i32.const 7)) (i32.const 2))))
                 (i32.const 15)))
      (i32.store8 offset=864 (i32.add (global.get $scratch) (local.get $i))
                  (i32.add (local.get $digit) (select (i32.const 48) (i32.const 87) (i32.lt_u (local.get $digit) (i32.const 10)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $hex))))

  ;; the module's trace batches: `count` (dispatcher id, variant) pairs of little-endian u32s
  (func (export "mewe_trace") (param $pairs i32) (param $count i32)
    (call $sha_update (local.get $pairs) (i32.shl (local.get $count) (i32.const 3))))

  (func $decimal (param $v i64) (param $out i32) (result i32)  ;; $v in decimal at $out; its length
    (local $n i32) (local $t i64)
    (local.set $t (local.get $v))
    (loop $count
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (local.set $t (i64.div_u (local.get $t) (i64.const 10)))
      (br_if $count (i64.ne (local.get $t) (i64.const 0))))
    (local.set $out (i32.add (local.get $out) (local.get $n)))
    (loop $digits
      (local.set $out (i32.sub (local.get $out) (i32.const 1)))
      (i32.store8 (local.get $out) (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $v) (i64.const 10)))))
      (local.set $v (i64.div_u (local.get $v) (i64.const 10)))
      (br_if $digits (i64.ne (local.get $v) (i64.const 0))))
    (local.get $n))

  (func $header (param $fields i32) (param $name i32) (param $name_len i32) (param $value i32) (param $value_len i32)
    (call $fields_append (local.get $fields) (i32.add (global.get $scratch) (local.get $name)) (local.get $name_len)
                         (i32.add (global.get $scratch) (local.get $value)) (local.get $value_len) (global.get $scratch)))

  (func $cabi_import_realloc (export "cabi_import_realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
                           (i32.sub (i32.const 0) (local.get $align))))
    (if (i32.gt_u (i32.add (local.get $p) (local.get $size)) (global.get $heap_end))
      (then
        (global.set $heap (call $pages (i32.add (local.get $size) (i32.const 65536))))
        (global.set $heap_end (i32.add (global.get $heap) (i32.add (local.get $size) (i32.const 65536))))
        (local.set $p (global.get $heap))))
    (if (local.get $old_size)
      (then (memory.copy (local.get $p) (local.get $old) (local.get $old_size))))
    (global.set $heap (i32.add (local.get $p) (local.get $size)))
    (local.get $p))

  ;; append [src, src+n) to a buffer; returns the buffer's (maybe new) address
  (func $append (param $buf i32) (param $len i32) (param $cap i32) (param $src i32) (param $n i32) (result i32 i32)
    (local $new i32) (local $newcap i32)
    (if (i32.gt_u (i32.add (local.get $len) (local.get $n)) (local.get $cap))
      (then
        (local.set $newcap (i32.shl (i32.add (local.get $len) (local.get $n)) (i32.const 1)))
        (local.set $new (call $pages (local.get $newcap)))
        (if (local.get $len) (then (memory.copy (local.get $new) (local.get $buf) (local.get $len))))
        (local.set $buf (local.get $new))
        (local.set $cap (i32.and (i32.add (local.get $newcap) (i32.const 65535)) (i32.const -65536)))))
    (memory.copy (i32.add (local.get $buf) (local.get $len)) (local.get $src) (local.get $n))
    (local.get $buf) (local.get $cap))

  (func $write_to (param $fd i32) (param $src i32) (param $n i32)
    (if (i32.eq (local.get $fd) (i32.const 1))
      (then
        (call $append (global.get $out_ptr) (global.get $out_len) (global.get $out_cap) (local.get $src) (local.get $n))
        (global.set $out_cap) (global.set $out_ptr)
        (global.set $out_len (i32.add (global.get $out_len) (local.get $n))))
      (else
        (call $append (global.get $err_ptr) (global.get $err_len) (global.get $err_cap) (local.get $src) (local.get $n))
        (global.set $err_cap) (global.set $err_ptr)
        (global.set $err_len (i32.add (global.get $err_len) (local.get $n))))))

  ;; ---- preview1 ----
  (func (export "fd_write") (param $fd i32) (param $iovs i32) (param $n i32) (param $written i32) (result i32)
    (local $i i32) (local $total i32) (local $len i32)
    (if (i32.or (i32.lt_s (local.get $fd) (i32.const 1)) (i32.gt_s (local.get $fd) (i32.const 2)))
      (then (return (i32.const 8))))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $len (i32.load offset=4 (i32.add (local.get $iovs) (i32.shl (local.get $i) (i32.const 3)))))
      (call $write_to (local.get $fd) (i32.load (i32.add (local.get $iovs) (i32.shl (local.get $i) (i32.const 3)))) (local.get $len))
      (local.set $total (i32.add (local.get $total) (local.get $len)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (i32.store (local.get $written) (local.get $total))
    (i32.const 0))

  (func (export "fd_read") (param $fd i32) (param $iovs i32) (param $n i32) (param $read i32) (result i32)
    (local $i i32) (local $total i32) (local $want i32) (local $left i32)
    (if (local.get $fd) (then (return (i32.const 8))))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $left (i32.sub (global.get $in_len) (global.get $in_pos)))
      (local.set $want (i32.load offset=4 (i32.add (local.get $iovs) (i32.shl (local.get $i) (i32.const 3)))))
      (if (i32.lt_u (local.get $left) (local.get $want)) (then (local.set $want (local.get $left))))
      (memory.copy (i32.load (i32.add (local.get $iovs) (i32.shl (local.get $i) (i32.const 3))))
                   (i32.add (global.get $in_ptr) (global.get $in_pos)) (local.get $want))
      (global.set $in_pos (i32.add (global.get $in_pos) (local.get $want)))
      (local.set $total (i32.add (local.get $total) (local.get $want)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (i32.store (local.get $read) (local.get $total))
    (i32.const 0))

  (func (export "fd_close") (param $fd i32) (result i32)
    (select (i32.const 0) (i32.const 8) (i32.le_u (local.get $fd) (i32.const 2))))
  (func (export "fd_seek") (param i32 i64 i32 i32) (result i32) (i32.const 70))
  (func (export "fd_fdstat_get") (param $fd i32) (param $buf i32) (result i32)
    (if (i32.gt_u (local.get $fd) (i32.const 2)) (then (return (i32.const 8))))
    (i64.store (local.get $buf) (i64.const 0))          ;; filetype unknown (a pipe), no flags
    (i64.store offset=8 (local.get $buf) (i64.const -1)) ;; rights
    (i64.store offset=16 (local.get $buf) (i64.const -1))
    (i32.const 0))
  (func (export "fd_prestat_get") (param i32 i32) (result i32) (i32.const 8))
  (func (export "fd_prestat_dir_name") (param i32 i32 i32) (result i32) (i32.const 8))
  (func (export "environ_sizes_get") (param $count i32) (param $size i32) (result i32)
    (i32.store (local.get $count) (i32.const 0)) (i32.store (local.get $size) (i32.const 0)) (i32.const 0))
  (func (export "environ_get") (param i32 i32) (result i32) (i32.const 0))
  (func (export "args_sizes_get") (param $count i32) (param $size i32) (result i32)
    (i32.store (local.get $count) (global.get $argc))
    (i32.store (local.get $size) (global.get $args_len))
    (i32.const 0))
  (func (export "args_get") (param $argv i32) (param $buf i32) (result i32)
    (local $i i32) (local $p i32) (local $k i32)
    (memory.copy (local.get $buf) (global.get $args_ptr) (global.get $args_len))
    ;; each argument starts after the previous one's NUL
    (i32.store (local.get $argv) (local.get $buf))
    (local.set $k (i32.const 1))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (global.get $args_len)))
      (if (i32.eqz (i32.load8_u (i32.add (global.get $args_ptr) (local.get $i))))
        (then
          (if (i32.lt_u (local.get $k) (global.get $argc))
            (then
              (i32.store (i32.add (local.get $argv) (i32.shl (local.get $k) (i32.const 2)))
                         (i32.add (local.get $buf) (i32.add (local.get $i) (i32.const 1))))
              (local.set $k (i32.add (local.get $k) (i32.const 1)))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (i32.const 0))
  (func (export "random_get") (param $buf i32) (param $len i32) (result i32)
    (local $mark i32)
    (local.set $mark (global.get $heap))
    (call $random_bytes (i64.extend_i32_u (local.get $len)) (global.get $scratch))
    (memory.copy (local.get $buf) (i32.load (global.get $scratch)) (local.get $len))
    (global.set $heap (local.get $mark))
    (i32.const 0))
  (func (export "clock_time_get") (param $id i32) (param $precision i64) (param $out i32) (result i32)
    (if (i32.eqz (local.get $id))
      (then
        (call $wall_now (global.get $scratch))
        (i64.store (local.get $out)
          (i64.add (i64.mul (i64.load (global.get $scratch)) (i64.const 1000000000))
                   (i64.load32_u offset=8 (global.get $scratch)))))
      (else (i64.store (local.get $out) (call $mono_now))))
    (i32.const 0))
  (func (export "clock_res_get") (param i32 i32) (result i32) (i64.store (local.get 1) (i64.const 1000)) (i32.const 0))
  (func (export "sched_yield") (result i32) (i32.const 0))
  (func (export "poll_oneoff") (param i32 i32 i32 i32) (result i32) (i32.const 52))
  ;; The rest of preview1, so that any program links: there are no files, directories or
  ;; sockets, so these fail as a WASI host without preopens would (errno values of preview1:
  ;; 8 EBADF, 52 ENOSYS, 58 ENOTSUP, 70 ESPIPE).
  (func $stdio_or_badf (param $fd i32) (param $errno i32) (result i32)  ;; $errno for fds 0-2, else EBADF
    (select (local.get $errno) (i32.const 8) (i32.le_u (local.get $fd) (i32.const 2))))
  (func (export "fd_advise") (param $fd i32) (param i64 i64 i32) (result i32) (call $stdio_or_badf (local.get $fd) (i32.const 70)))
  (func (export "fd_allocate") (param $fd i32) (param i64 i64) (result i32) (call $stdio_or_badf (local.get $fd) (i32.const 58)))
  (func (export "fd_datasync") (param $fd i32) (result i32) (call $stdio_or_badf (local.get $fd) (i32.const 58)))
  (func (export "fd_sync") (param $fd i32) (result i32) (call $stdio_or_badf (local.get $fd) (i32.const 58)))
  (func (export "fd_fdstat_set_flags") (param $fd i32) (param i32) (result i32) (call $stdio_or_badf (local.get $fd) (i32.const 58)))
  (func (export "fd_fdstat_set_rights") (param $fd i32) (param i64 i64) (result i32) (call $stdio_or_badf (local.get $fd) (i32.const 58)))
  (func (export "fd_filestat_get") (param $fd i32) (param $buf i32) (result i32)  ;; stdio: all zeros, type unknown
    (if (i32.gt_u (local.get $fd) (i32.const 2)) (then (return (i32.const 8))))
    (memory.fill (local.get $buf) (i32.const 0) (i32.const 64))
    (i32.const 0))
  (func (export "fd_filestat_set_size") (param $fd i32) (param i64) (result i32) (call $stdio_or_badf (local.get $fd) (i32.const 58)))
  (func (export "fd_filestat_set_times") (param $fd i32) (param i64 i64 i32) (result i32) (call $stdio_or_badf (local.get $fd) (i32.const 58)))
  (func (export "fd_pread") (param $fd i32) (param i32 i32 i64 i32) (result i32) (call $stdio_or_badf (local.get $fd) (i32.const 70)))
  (func (export "fd_pwrite") (param $fd i32) (param i32 i32 i64 i32) (result i32) (call $stdio_or_badf (local.get $fd) (i32.const 70)))
  (func (export "fd_readdir") (param $fd i32) (param i32 i32 i64 i32) (result i32) (call $stdio_or_badf (local.get $fd) (i32.const 58)))
  (func (export "fd_renumber") (param $fd i32) (param i32) (result i32) (call $stdio_or_badf (local.get $fd) (i32.const 58)))
  (func (export "fd_tell") (param $fd i32) (param i32) (result i32) (call $stdio_or_badf (local.get $fd) (i32.const 70)))
  (func (export "path_create_directory") (param i32 i32 i32) (result i32) (i32.const 8))
  (func (export "path_filestat_get") (param i32 i32 i32 i32 i32) (result i32) (i32.const 8))
  (func (export "path_filestat_set_times") (param i32 i32 i32 i32 i64 i64 i32) (result i32) (i32.const 8))
  (func (export "path_link") (param i32 i32 i32 i32 i32 i32 i32) (result i32) (i32.const 8))
  (func (export "path_open") (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32) (i32.const 8))
  (func (export "path_readlink") (param i32 i32 i32 i32 i32 i32) (result i32) (i32.const 8))
  (func (export "path_remove_directory") (param i32 i32 i32) (result i32) (i32.const 8))
  (func (export "path_rename") (param i32 i32 i32 i32 i32 i32) (result i32) (i32.const 8))
  (func (export "path_symlink") (param i32 i32 i32 i32 i32) (result i32) (i32.const 8))
  (func (export "path_unlink_file") (param i32 i32 i32) (result i32) (i32.const 8))
  (func (export "proc_raise") (param i32) (result i32) (i32.const 52))
  (func (export "sock_accept") (param i32 i32 i32) (result i32) (i32.const 8))
  (func (export "sock_recv") (param i32 i32 i32 i32 i32 i32) (result i32) (i32.const 8))
  (func (export "sock_send") (param i32 i32 i32 i32 i32) (result i32) (i32.const 8))
  (func (export "sock_shutdown") (param i32 i32) (result i32) (i32.const 8))
  (func (export "proc_exit") (param $code i32)
    (call $respond (local.get $code))
    unreachable)

  ;; ---- the response: 200 and stdout, or 500 and stderr ----
  (func $respond (param $code i32)
    (local $fields i32) (local $resp i32) (local $body i32) (local $stream i32) (local $ptr i32) (local $len i32) (local $n i32)
    (if (i32.lt_s (global.get $outparam) (i32.const 0)) (then (return)))
    (local.set $fields (call $fields_new))
    (call $header (local.get $fields) (i32.const 1056) (i32.const 11)
                  (i32.const 960) (call $decimal (i64.extend_i32_u (local.get $code)) (i32.add (global.get $scratch) (i32.const 960))))
    (if (global.get $traced)
      (then
        (call $trace_flush)  ;; the module hands over its last batch
        (call $sha_final)
        (call $header (local.get $fields) (i32.const 1024) (i32.const 12) (i32.const 864) (i32.const 64))
        (call $header (local.get $fields) (i32.const 1024) (i32.const 19)
                      (i32.const 960) (call $decimal (i64.shr_u (global.get $sha_len) (i64.const 3))
                                                     (i32.add (global.get $scratch) (i32.const 960))))))
    (local.set $resp (call $response_new (local.get $fields)))
    (drop (call $set_status (local.get $resp) (select (i32.const 200) (i32.const 500) (i32.eqz (local.get $code)))))
    (call $response_body (local.get $resp) (global.get $scratch))
    (local.set $body (i32.load offset=4 (global.get $scratch)))
    (call $body_write (local.get $body) (global.get $scratch))
    (local.set $stream (i32.load offset=4 (global.get $scratch)))
    (call $outparam_set (global.get $outparam) (i32.const 0) (local.get $resp) (i32.const 0) (i64.const 0)
                        (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))
    (global.set $outparam (i32.const -1))
    (if (i32.eqz (local.get $code))
      (then (local.set $ptr (global.get $out_ptr)) (local.set $len (global.get $out_len)))
      (else (local.set $ptr (global.get $err_ptr)) (local.set $len (global.get $err_len))))
    (block $done (loop $next
      (br_if $done (i32.eqz (local.get $len)))
      (local.set $n (select (local.get $len) (i32.const 4096) (i32.lt_u (local.get $len) (i32.const 4096))))
      (call $write_flush (local.get $stream) (local.get $ptr) (local.get $n) (global.get $scratch))
      (local.set $ptr (i32.add (local.get $ptr) (local.get $n)))
      (local.set $len (i32.sub (local.get $len) (local.get $n)))
      (br $next)))
    (call $drop_output (local.get $stream))
    (call $body_finish (local.get $body) (i32.const 0) (i32.const 0) (global.get $scratch)))

  ;; ?arg=A&arg=B -> argv[1..]: percent-decoded, '+' as a space
  (func $hex (param $c i32) (result i32)
    (if (i32.le_u (i32.sub (local.get $c) (i32.const 48)) (i32.const 9)) (then (return (i32.sub (local.get $c) (i32.const 48)))))
    (i32.and (i32.add (i32.sub (i32.or (local.get $c) (i32.const 32)) (i32.const 97)) (i32.const 10)) (i32.const 15)))
  (func $parse_query (param $p i32) (param $end i32)
    (local $c i32) (local $in_arg i32) (local $out i32)
    (local.set $out (i32.add (global.get $args_ptr) (global.get $args_len)))
    ;; skip to '?'
    (block $found (loop $seek
      (br_if $found (i32.ge_u (local.get $p) (local.get $end)))
      (local.set $c (i32.load8_u (local.get $p)))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (br_if $found (i32.eq (local.get $c) (i32.const 63)))
      (br $seek)))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
      ;; a pair starting "arg="?
      (if (i32.and (i32.le_u (i32.add (local.get $p) (i32.const 4)) (local.get $end))
                   (i32.eq (i32.load (local.get $p)) (i32.const 0x3d677261)))
        (then
          (local.set $p (i32.add (local.get $p) (i32.const 4)))
          (block $pair (loop $char
            (br_if $pair (i32.ge_u (local.get $p) (local.get $end)))
            (local.set $c (i32.load8_u (local.get $p)))
            (br_if $pair (i32.eq (local.get $c) (i32.const 38)))
            (if (i32.eq (local.get $c) (i32.const 43)) (then (local.set $c (i32.const 32))))
            (if (i32.and (i32.eq (local.get $c) (i32.const 37)) (i32.le_u (i32.add (local.get $p) (i32.const 3)) (local.get $end)))
              (then
                (local.set $c (i32.or (i32.shl (call $hex (i32.load8_u offset=1 (local.get $p))) (i32.const 4))
                                      (call $hex (i32.load8_u offset=2 (local.get $p)))))
                (local.set $p (i32.add (local.get $p) (i32.const 2)))))
            (i32.store8 (local.get $out) (local.get $c))
            (local.set $out (i32.add (local.get $out) (i32.const 1)))
            (local.set $p (i32.add (local.get $p) (i32.const 1)))
            (br $char)))
          (i32.store8 (local.get $out) (i32.const 0))
          (local.set $out (i32.add (local.get $out) (i32.const 1)))
          (global.set $argc (i32.add (global.get $argc) (i32.const 1))))
        (else  ;; another pair: skip it
          (block $skip (loop $s
            (br_if $skip (i32.ge_u (local.get $p) (local.get $end)))
            (br_if $skip (i32.eq (i32.load8_u (local.get $p)) (i32.const 38)))
            (local.set $p (i32.add (local.get $p) (i32.const 1)))
            (br $s)))))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))  ;; past '&'
      (br $next)))
    (global.set $args_len (i32.sub (local.get $out) (global.get $args_ptr))))

  (func (export "wasi:http/incoming-handler@0.2.3#handle") (param $request i32) (param $outparam i32)
    (local $body i32) (local $stream i32) (local $mark i32) (local $len i32)
    (call $init)
    (global.set $outparam (local.get $outparam))
    (call $path_with_query (local.get $request) (global.get $scratch))
    (if (i32.load8_u (global.get $scratch))
      (then (call $parse_query (i32.load offset=4 (global.get $scratch))
                               (i32.add (i32.load offset=4 (global.get $scratch)) (i32.load offset=8 (global.get $scratch))))))
    (call $consume (local.get $request) (global.get $scratch))
    (local.set $body (i32.load offset=4 (global.get $scratch)))
    (call $body_stream (local.get $body) (global.get $scratch))
    (local.set $stream (i32.load offset=4 (global.get $scratch)))
    (block $eof (loop $more
      (local.set $mark (global.get $heap))
      (call $blocking_read (local.get $stream) (i64.const 65536) (global.get $scratch))
      (br_if $eof (i32.load8_u (global.get $scratch)))  ;; an error: closed
      (local.set $len (i32.load offset=8 (global.get $scratch)))
      (call $append (global.get $in_ptr) (global.get $in_len) (global.get $in_cap) (i32.load offset=4 (global.get $scratch)) (local.get $len))
      (global.set $in_cap) (global.set $in_ptr)
      (global.set $in_len (i32.add (global.get $in_len) (local.get $len)))
      (global.set $heap (local.get $mark))
      (br $more)))
    (call $drop_input (local.get $stream))
    (call $drop_incoming_body (local.get $body))
    (call $start)
    (call $respond (i32.const 0)))
)
