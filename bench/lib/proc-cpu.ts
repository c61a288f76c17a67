/**
 * CPU time of the processes behind a local server, read from /proc (Linux): on a CPU-bound local runtime, the CPU
 * a request costs is what its throughput ratio against another request is bound by, whatever else shares the cores.
 */
import { readdirSync, readFileSync } from "node:fs";

/** USER_HZ: /proc/<pid>/stat counts CPU time in ticks of 10 ms. */
const TICK_MS = 10;

/** Every process below `root`, named by role: the runtime workerd (started with --inspector-addr), wrangler's proxy workerd, or its comm. */
export function serverProcesses(root: number): { pid: number; role: string }[] {
  const children = new Map<number, number[]>();
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(e)]);
    } catch {
      /* gone */
    }
  }
  const out: { pid: number; role: string }[] = [];
  const walk = (p: number) => {
    for (const pid of children.get(p) ?? []) {
      try {
        const comm = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
        const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
        out.push({ pid, role: comm === "workerd" ? (cmd.includes("--inspector-addr") ? "runtime workerd" : "proxy workerd") : comm });
      } catch {
        /* gone */
      }
      walk(pid);
    }
  };
  walk(root);
  return out;
}

/** utime + stime of a process (all its threads), in ms; 0 once it is gone. */
export function cpuMs(pid: number | "self"): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) * TICK_MS;
  } catch {
    return 0;
  }
}
