/* podcap flows — placeholder until its issue lands; says so instead of pretending. */
#include <stdio.h>
#include "app.h"

int cmd_flows(int argc, char **argv)
{
	(void)argc; (void)argv;
	fprintf(stderr, "podcap flows: not yet implemented\n");
	return 1;
}
