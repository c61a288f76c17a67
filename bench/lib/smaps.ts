/**
 * Where a process's resident memory sits, from /proc/<pid>/smaps, without any help from the process. workerd
 * (1.20260426) links Google's tcmalloc and runs V8 with pointer compression, so its address space has two kinds of
 * large anonymous reservations: V8's 4 GiB pointer cage (every isolate's JS heap: ours and miniflare's Cache, KV,
 * D1, Queues and assets isolates), and tcmalloc's 1 GiB-aligned regions (every native allocation: SQLite page
 * caches, HTTP buffers, KJ objects, and freed memory tcmalloc keeps for reuse). glibc's brk heap and 64 MiB arenas
 * are counted with the native heap for runtimes that use them. workerd's inspector reports only the JS heaps and
 * cannot force a GC, so this split is what tells a JS-heap growth from a native one.
 */
import { readFileSync } from "node:fs";

export type MemoryParts = {
  /** V8 reservations (≥ 4 GiB of address space: the pointer cage): the JS heaps of every isolate. */
  v8: number;
  /** The native heap: tcmalloc's 1 GiB-aligned regions (glibc's brk heap and 64 MiB arenas where used). */
  native: number;
  /** Other anonymous mappings: stacks, V8 code and metadata outside the cage, odd mmaps. */
  otherAnon: number;
  /** Mapped files. */
  file: number;
};

const GiB = 2 ** 30;
const ARENA = 64 * 2 ** 20;

/** Resident MB of `pid` per part (0s when the process is gone). */
export function memoryParts(pid: number): MemoryParts {
  const parts: MemoryParts = { v8: 0, native: 0, otherAnon: 0, file: 0 };
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/smaps`, "utf8");
  } catch {
    return parts;
  }
  type Vma = { start: number; end: number; name: string; rss: number };
  const vmas: Vma[] = [];
  let cur: Vma | undefined;
  for (const line of text.split("\n")) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      cur = { start: parseInt(head[1]!, 16), end: parseInt(head[2]!, 16), name: head[3]!, rss: 0 };
      vmas.push(cur);
    } else if (cur && line.startsWith("Rss:")) cur.rss = Number(/(\d+)/.exec(line)![1]) / 1024;
  }
  // Contiguous anonymous mappings form one region (a reservation split by mprotect into several VMAs).
  let i = 0;
  while (i < vmas.length) {
    const v = vmas[i]!;
    if (v.name === "[heap]") {
      parts.native += v.rss;
      i++;
      continue;
    }
    if (v.name !== "") {
      if (v.name.startsWith("/")) parts.file += v.rss;
      else parts.otherAnon += v.rss; // [stack], [vdso]…
      i++;
      continue;
    }
    let j = i;
    let rss = 0;
    while (j < vmas.length && vmas[j]!.name === "" && (j === i || vmas[j]!.start === vmas[j - 1]!.end)) rss += vmas[j++]!.rss;
    const start = v.start;
    const size = vmas[j - 1]!.end - start;
    if (size >= 4 * GiB) parts.v8 += rss;
    else if ((size % GiB === 0 && start % GiB === 0) || (size === ARENA && start % ARENA === 0)) parts.native += rss;
    else parts.otherAnon += rss;
    i = j;
  }
  return parts;
}

export const formatParts = (p: MemoryParts) => `v8 ${p.v8.toFixed(0)} / native ${p.native.toFixed(0)} / other anon ${p.otherAnon.toFixed(0)} / file ${p.file.toFixed(0)}`;
