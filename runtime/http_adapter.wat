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
;; to report (a 5xx). There are no files, environment or preopens; random_get and the clocks
;; come from wasi:random and wasi:clocks.
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
        (global.set $args_len (i32.const 8)))))

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
  (func (export "proc_exit") (param $code i32)
    (call $respond (local.get $code))
    unreachable)

  ;; ---- the response: 200 and stdout, or 500 and stderr ----
  (func $respond (param $code i32)
    (local $fields i32) (local $resp i32) (local $body i32) (local $stream i32) (local $ptr i32) (local $len i32) (local $n i32)
    (if (i32.lt_s (global.get $outparam) (i32.const 0)) (then (return)))
    (local.set $fields (call $fields_new))
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
