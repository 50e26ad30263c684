/* podcap decode — placeholder until its issue lands; says so instead of pretending. */
#include <stdio.h>
#include "app.h"

int cmd_decode(int argc, char **argv)
{
	(void)argc; (void)argv;
	fprintf(stderr, "podcap decode: not yet implemented\n");
	return 1;
}
