/**
 * Splits a byte stream into text lines without ever holding more than one chunk plus one partial line:
 * imports of 100,000 lines are validated as they arrive instead of being buffered whole.
 */
export async function* readLines(body: ReadableStream<Uint8Array>): AsyncGenerator<{ line: number; text: string }> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = "";
  let line = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    pending += value;
    let start = 0;
    for (let nl = pending.indexOf("\n", start); nl !== -1; nl = pending.indexOf("\n", start)) {
      line += 1;
      yield { line, text: stripCr(pending.slice(start, nl)) };
      start = nl + 1;
    }
    pending = pending.slice(start);
  }
  if (pending.length > 0) {
    line += 1;
    yield { line, text: stripCr(pending) };
  }
}

const stripCr = (s: string) => (s.endsWith("\r") ? s.slice(0, -1) : s);
