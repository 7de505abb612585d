/** What every `spotkeep` subcommand exports (as `command`); cli/main.ts registers them. */
export interface Command {
  /** Run with the arguments after the subcommand name; resolves to the exit code. */
  run(argv: string[]): Promise<number>;
  usage: string;
}
