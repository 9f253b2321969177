/* cli.h — helpers shared by the CLI's subcommand files. */
#ifndef NBL_CLI_H
#define NBL_CLI_H

#include "nbl.h"

#include <stdint.h>
#include <stdio.h>

#define NBL_CMD(name, fn, help) int fn(int argc, char **argv);
#include "commands.h"
#undef NBL_CMD

/* Prints "nbl <cmd>: message" to stderr and returns 1 (the exit status for usage errors). */
int cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parses a decimal integer in [lo, hi]; returns 0 on success. */
int cli_int(const char *s, int64_t lo, int64_t hi, int64_t *out);
int cli_float(const char *s, double *out);
/* Writes token bytes to out with escapes for control characters and quotes. */
void cli_print_escaped(FILE *out, const char *s, size_t n);

/* Constrained output for `nbl run` (cmd_tasks.c): the grammar of --json, --json-schema FILE or
 * --choice a,b,c (NULL with a message on stderr), and the generation under it. */
nbl_grammar *cli_run_grammar(int json_object, const char *schema_path, const char *choices);
int cli_run_constrained(nbl_session *s, const int32_t *toks, int32_t n_toks, const nbl_grammar *g,
                        const nbl_sampler_params *sp, int64_t n_gen, int ids);

#endif
