// Test workload for JIT frames (issue 19): node [--perf-basic-prof] jit.js SECONDS [unlink]
//
// Runs hotLoop, which V8 compiles (optimized: "JS:*hotLoop" in the perf map), for SECONDS after a warm-up
// and its "ready" line; with `unlink`, deletes its own perf map (/tmp/perf-PID.map) before it exits, as
// some runtimes do: its frames must keep the names read while it lived.
function hotLoop(n) {
  let x = 0;
  for (let i = 0; i < n; i++) x = (x * 31 + i) % 1000003;
  return x;
}
let sink = 0;
for (let i = 0; i < 20; i++) sink += hotLoop(1000000);
const until = Date.now() + 1000 * Number(process.argv[2]);
console.log("ready");
while (Date.now() < until) sink += hotLoop(1000000);
if (process.argv[3] === "unlink") require("fs").unlinkSync(`/tmp/perf-${process.pid}.map`);
