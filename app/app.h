/* app — the podcap command line: one binary, one file per subcommand.
 * Each cmd_* gets argv with argv[0] = the subcommand name and returns the process
 * exit status: 0 success, 1 runtime failure, 2 bad usage (after printing a usage
 * line to stderr). */
#ifndef PODCAP_APP_H
#define PODCAP_APP_H

#include <stdio.h>

int cmd_decode(int argc, char **argv);
int cmd_read(int argc, char **argv);
int cmd_flows(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_run(int argc, char **argv);

/* Prints "usage: podcap <usage>" and a hint to stderr; returns 2. */
int app_usage(const char *usage);
/* Parses a size like "50M", "1G", "4096" into bytes; 0 on success, -EINVAL. */
int app_parse_size(const char *s, unsigned long long *out);
/* Parses a non-negative integer within [min,max]; 0 or -EINVAL. */
int app_parse_uint(const char *s, unsigned long long min, unsigned long long max,
		   unsigned long long *out);

#endif
