/**
 * Command-line options of the bench scripts, declared once as their defaults: `--name value` or `--name=value`.
 * A number default makes the option a number (anything else is refused with exit code 2, so a typo never runs a
 * bench with NaN), a boolean default makes it a flag, and `undefined` an optional string. Unknown options fail.
 */
import { parseArgs } from "node:util";

type Default = string | number | boolean | undefined;
type Parsed<S> = { [K in keyof S]: S[K] extends number ? number : S[K] extends boolean ? boolean : S[K] extends string ? string : string | undefined };

export function benchArgs<S extends Record<string, Default>>(defaults: S, argv: string[] = process.argv.slice(2)): Parsed<S> {
  const options: Record<string, { type: "string" | "boolean"; default?: string | boolean }> = {};
  for (const [name, value] of Object.entries(defaults)) {
    if (typeof value === "boolean") options[name] = { type: "boolean", default: value };
    else if (value === undefined) options[name] = { type: "string" };
    else options[name] = { type: "string", default: String(value) };
  }
  const { values } = parseArgs({ args: argv, options, strict: true });
  const out: Record<string, Default> = {};
  for (const [name, value] of Object.entries(defaults)) {
    const given = values[name];
    if (typeof value === "number") {
      const n = Number(given);
      if (given === "" || !Number.isFinite(n)) {
        console.error(`--${name} must be a number, got ${JSON.stringify(given)}`);
        process.exit(2);
      }
      out[name] = n;
    } else out[name] = given;
  }
  return out as Parsed<S>;
}
