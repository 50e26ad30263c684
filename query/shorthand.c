/* query — the old `podcap flows --app/--ip/--port` flags as filter text. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void quoted(struct q_buf *b, const char *s)
{
	q_buf_puts(b, "\"");
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			q_buf_puts(b, "\\");
		q_buf_add(b, s, 1);
	}
	q_buf_puts(b, "\"");
}

char *q_shorthand(const char *filter, const char *app, const char *ip, int port)
{
	if (port > 65535) {
		errno = EINVAL;
		return NULL;
	}
	int has_filter = filter && *filter, has_app = app && *app, has_ip = ip && *ip;
	int parts = has_filter + has_app + has_ip + (port >= 0);
	struct q_buf b = {0};
	q_buf_add(&b, "", 0);
	/* A lone filter is returned as it is, so error positions match what the
	 * user typed. */
	if (has_filter && parts == 1) {
		q_buf_puts(&b, filter);
	} else {
		const char *sep = "";
		if (has_filter) {
			q_buf_puts(&b, "(");
			q_buf_puts(&b, filter);
			q_buf_puts(&b, ")");
			sep = " and ";
		}
		if (has_app) {
			q_buf_puts(&b, sep);
			q_buf_puts(&b, "app == ");
			quoted(&b, app);
			sep = " and ";
		}
		if (has_ip) {
			q_buf_puts(&b, sep);
			q_buf_puts(&b, "(ip == ");
			quoted(&b, ip);
			q_buf_puts(&b, " or outer.ip == ");
			quoted(&b, ip);
			q_buf_puts(&b, ")");
			sep = " and ";
		}
		if (port >= 0) {
			q_buf_puts(&b, sep);
			q_buf_printf(&b, "port == %d", port);
		}
	}
	if (b.oom || !b.p) {
		free(b.p);
		errno = ENOMEM;
		return NULL;
	}
	return b.p;
}
