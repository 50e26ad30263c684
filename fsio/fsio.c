/* fsio — see fsio.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "fsio.h"

static int msg(char *errbuf, size_t errlen, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int msg(char *errbuf, size_t errlen, int rc, const char *fmt, ...)
{
	if (errbuf && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(errbuf, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* ---- locks ---- */

struct fsio_lock {
	int fd;
};

pid_t fsio_lock_holder(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return 0;
	FILE *f = fopen("/proc/locks", "r");
	if (!f)
		return 0;
	char line[256];
	pid_t pid = 0;
	/* "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF" (blocked waiters have
	 * "->" after the number and are not holders) */
	while (!pid && fgets(line, sizeof(line), f)) {
		char kind[16], mode[16], rw[16];
		unsigned maj, min;
		unsigned long long ino;
		long p;
		if (strstr(line, "->"))
			continue;
		if (sscanf(line, "%*d: %15s %15s %15s %ld %x:%x:%llu", kind, mode, rw, &p, &maj, &min, &ino) == 7 &&
		    !strcmp(kind, "FLOCK") && ino == (unsigned long long)st.st_ino &&
		    makedev(maj, min) == st.st_dev)
			pid = (pid_t)p;
	}
	fclose(f);
	return pid;
}

int fsio_lock(const char *path, const char *what, struct fsio_lock **out, char *errbuf, size_t errlen)
{
	*out = NULL;
	struct fsio_lock *l = calloc(1, sizeof(*l));
	if (!l)
		return msg(errbuf, errlen, -ENOMEM, "out of memory");
	l->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (l->fd < 0) {
		int e = errno;
		free(l);
		return msg(errbuf, errlen, -e, "%s: %s", path, strerror(e));
	}
	if (flock(l->fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		close(l->fd);
		free(l);
		if (e != EWOULDBLOCK)
			return msg(errbuf, errlen, -e, "%s: cannot lock: %s", path, strerror(e));
		pid_t pid = fsio_lock_holder(path);
		char cmd[160] = "";
		if (pid > 0) {
			char p[64];
			snprintf(p, sizeof(p), "/proc/%d/cmdline", (int)pid);
			FILE *f = fopen(p, "r");
			if (f) {
				size_t n = fread(cmd, 1, sizeof(cmd) - 1, f);
				fclose(f);
				cmd[n] = 0;
				for (size_t i = 0; i + 1 < n; i++)
					if (!cmd[i])
						cmd[i] = ' ';
			}
		}
		if (pid > 0)
			return msg(errbuf, errlen, -EBUSY, "%s is being written by process %d (%s); one writer at a "
				   "time (readers such as podcap flows and export still work)", what, (int)pid,
				   cmd[0] ? cmd : "?");
		return msg(errbuf, errlen, -EBUSY, "%s is being written by another process; one writer at a "
			   "time (readers such as podcap flows and export still work)", what);
	}
	*out = l;
	return 0;
}

void fsio_unlock(struct fsio_lock *l)
{
	if (!l)
		return;
	close(l->fd);
	free(l);
}

/* ---- permissions ---- */

static gid_t the_group = (gid_t)-1;

int fsio_set_group(const char *group, char *errbuf, size_t errlen)
{
	if (!group || !*group) {
		the_group = (gid_t)-1;
		return 0;
	}
	char *end;
	unsigned long v = strtoul(group, &end, 10);
	if (*group >= '0' && *group <= '9' && !*end && v < (unsigned long)(gid_t)-1) {
		the_group = (gid_t)v;
		return 0;
	}
	struct group *g = getgrnam(group);
	if (!g)
		return msg(errbuf, errlen, -ENOENT, "no such group '%s'", group);
	the_group = g->gr_gid;
	return 0;
}

int fsio_own_fd(int fd, mode_t mode)
{
	if (the_group != (gid_t)-1 && fchown(fd, (uid_t)-1, the_group) < 0)
		return -errno;
	return fchmod(fd, mode) < 0 ? -errno : 0;
}

int fsio_own_path(const char *path, mode_t mode)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
	if (fd < 0)
		return -errno;
	int rc = fsio_own_fd(fd, mode);
	close(fd);
	return rc;
}

int fsio_precreate(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, FSIO_FILE_MODE);
	if (fd < 0)
		return errno == EEXIST ? 0 : -errno;
	int rc = fsio_own_fd(fd, FSIO_FILE_MODE);
	close(fd);
	return rc;
}

/* ---- output files ---- */

struct fsio_output {
	int fd;
	int is_stdout;
	int direct; /* a FIFO or a device: written in place, closed by us */
	char *path, *tmp;
};

int fsio_output_open(const char *path, mode_t mode, struct fsio_output **out, char *errbuf, size_t errlen)
{
	*out = NULL;
	struct fsio_output *o = calloc(1, sizeof(*o));
	if (!o)
		return msg(errbuf, errlen, -ENOMEM, "out of memory");
	if (!strcmp(path, "-")) {
		o->fd = STDOUT_FILENO;
		o->is_stdout = 1;
		*out = o;
		return 0;
	}
	struct stat st;
	if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
		free(o);
		return msg(errbuf, errlen, -ELOOP, "%s is a symbolic link: not writing through it", path);
	}
	if (lstat(path, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode))) {
		/* A named pipe (wireshark -k -i FIFO) or a device (/dev/null): a
		 * stream, not a file to replace: written in place, as stdout is.
		 * O_NOFOLLOW: it must still not be a link when we open it. */
		o->fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
		if (o->fd < 0) {
			int e = errno;
			free(o);
			return msg(errbuf, errlen, -e, "%s: %s", path, strerror(e));
		}
		o->direct = 1;
		o->path = strdup(path); /* for messages only */
		*out = o;
		return 0;
	}
	if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
		free(o);
		return msg(errbuf, errlen, -EINVAL, "%s exists and is not a regular file, a pipe or a device", path);
	}
	const char *slash = strrchr(path, '/');
	size_t dlen = slash ? (size_t)(slash - path) + 1 : 0;
	if (!(o->path = strdup(path)) || asprintf(&o->tmp, "%.*s.%s.tmp-XXXXXX", (int)dlen, path,
						  slash ? slash + 1 : path) < 0) {
		o->tmp = NULL;
		fsio_output_abort(o);
		return msg(errbuf, errlen, -ENOMEM, "out of memory");
	}
	o->fd = mkostemp(o->tmp, O_CLOEXEC);
	if (o->fd < 0) {
		int e = errno;
		free(o->tmp);
		o->tmp = NULL;
		fsio_output_abort(o);
		return msg(errbuf, errlen, -e, "%s: cannot create a file beside it: %s", path, strerror(e));
	}
	int rc = fsio_own_fd(o->fd, mode);
	if (rc < 0) {
		fsio_output_abort(o);
		return msg(errbuf, errlen, rc, "%s: %s", path, strerror(-rc));
	}
	*out = o;
	return 0;
}

int fsio_output_fd(const struct fsio_output *o) { return o->fd; }

int fsio_output_commit(struct fsio_output *o, char *errbuf, size_t errlen)
{
	if (o->is_stdout) {
		free(o);
		return 0;
	}
	if (o->direct) {
		int rc = close(o->fd) < 0 ? msg(errbuf, errlen, -errno, "%s: %s", o->path ? o->path : "output",
						 strerror(errno)) : 0;
		free(o->path);
		free(o);
		return rc;
	}
	int rc = 0;
	struct stat st;
	if (fsync(o->fd) < 0 && errno != EINVAL)
		rc = msg(errbuf, errlen, -errno, "%s: %s", o->path, strerror(errno));
	else if (lstat(o->path, &st) == 0 && S_ISLNK(st.st_mode))
		rc = msg(errbuf, errlen, -ELOOP, "%s became a symbolic link: not replacing it", o->path);
	else if (rename(o->tmp, o->path) < 0)
		rc = msg(errbuf, errlen, -errno, "%s: %s", o->path, strerror(errno));
	if (rc == 0) {
		free(o->tmp);
		o->tmp = NULL; /* renamed: nothing to remove */
		/* the rename itself reaches the disk with its directory (best effort) */
		const char *slash = strrchr(o->path, '/');
		char dir[PATH_MAX];
		snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - o->path) + (slash == o->path) : 1,
			 slash ? o->path : ".");
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	}
	fsio_output_abort(o);
	return rc;
}

void fsio_output_abort(struct fsio_output *o)
{
	if (!o)
		return;
	if (!o->is_stdout && o->fd >= 0)
		close(o->fd);
	if (o->tmp)
		unlink(o->tmp);
	free(o->tmp);
	free(o->path);
	free(o);
}

/* ---- space ---- */

int fsio_free_bytes(const char *dir, uint64_t *out)
{
	struct statvfs v;
	if (statvfs(dir, &v) < 0)
		return -errno;
	*out = (uint64_t)v.f_bavail * v.f_frsize;
	return 0;
}

static uint64_t walk(const char *dir, int depth)
{
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	uint64_t total = 0;
	struct dirent *e;
	char p[PATH_MAX];
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		struct stat st;
		if (snprintf(p, sizeof(p), "%s/%s", dir, e->d_name) >= (int)sizeof(p) || lstat(p, &st) < 0)
			continue;
		total += (uint64_t)st.st_blocks * 512;
		if (S_ISDIR(st.st_mode) && depth > 0)
			total += walk(p, depth - 1);
	}
	closedir(d);
	return total;
}

uint64_t fsio_dir_bytes(const char *dir)
{
	return walk(dir, 1);
}
