/* podcap run — placeholder until its issue lands; says so instead of pretending. */
#include <stdio.h>
#include "app.h"

int cmd_run(int argc, char **argv)
{
	(void)argc; (void)argv;
	fprintf(stderr, "podcap run: not yet implemented\n");
	return 1;
}
