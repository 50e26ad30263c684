/* podcap export — placeholder until its issue lands; says so instead of pretending. */
#include <stdio.h>
#include "app.h"

int cmd_export(int argc, char **argv)
{
	(void)argc; (void)argv;
	fprintf(stderr, "podcap export: not yet implemented\n");
	return 1;
}
