#!/usr/bin/env node
/*
 * The `threadbus` command: subcommands `bench` (a load generator on a bus of its own) and
 * `profile` (any Node program with every thread profiled, one flame graph per thread).
 * Bad usage prints a clear message and exits 2; `--help` works for each subcommand.
 */

import { benchCommand } from './bench/command.js';
import { profileCommand } from './profile/command.js';
import { EXIT_USAGE, UsageError } from './usage-error.js';

const HELP = `usage: threadbus <command> [options]

commands:
  bench     load-test a bus: patterns, rates, uids, live progress, JSON and HTML reports
  profile   run a Node program with every thread profiled: threadbus profile [--out DIR] -- node app.js

Run 'threadbus <command> --help' for a command's options.`;

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  bench: benchCommand,
  profile: profileCommand,
};

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(HELP);
    return name === undefined ? EXIT_USAGE : 0;
  }
  const command = COMMANDS[name];
  if (command === undefined) throw new UsageError(`unknown command '${name}' (expected ${Object.keys(COMMANDS).join(' or ')})`);
  return command(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    if (e instanceof UsageError) {
      console.error(`threadbus: ${e.message}\nRun 'threadbus --help' for usage.`);
      process.exitCode = EXIT_USAGE;
    } else {
      console.error(`threadbus: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      process.exitCode = 1;
    }
  },
);
