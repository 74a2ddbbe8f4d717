/** A benchmark's command line: `--name value` options and `--flag` switches. */
export interface BenchArgs {
  /** The value after `name`, if given. */
  string(name: string): string | undefined;
  /** The number after `name`, or `def`. */
  number(name: string, def: number): number;
  /** The comma-separated list after `name`, if given. */
  list(name: string): string[] | undefined;
  /** Whether `name` is given. */
  flag(name: string): boolean;
}

/** Reads `argv` (the process's arguments after the script, by default). */
export function benchArgs(argv: readonly string[] = process.argv.slice(2)): BenchArgs {
  const string = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  return {
    string,
    number: (name, def) => {
      const v = string(name);
      return v === undefined ? def : Number(v);
    },
    list: (name) => string(name)?.split(",").map((s) => s.trim()).filter(Boolean),
    flag: (name) => argv.includes(name),
  };
}
