/* podcap read — placeholder until its issue lands; says so instead of pretending. */
#include <stdio.h>
#include "app.h"

int cmd_read(int argc, char **argv)
{
	(void)argc; (void)argv;
	fprintf(stderr, "podcap read: not yet implemented\n");
	return 1;
}
