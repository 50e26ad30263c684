/* Replays the filter fuzz target's regression inputs (tests/query/regress/: inputs
 * that once broke it, plus hand-made hostile ones) through the same function;
 * without a libFuzzer runtime a failed invariant is a plain abort. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
	int files = 0;
	for (int i = 1; i < argc; i++) {
		DIR *d = opendir(argv[i]);
		if (!d) {
			perror(argv[i]);
			return 1;
		}
		struct dirent *e;
		while ((e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			char path[4096];
			snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
			FILE *f = fopen(path, "rb");
			if (!f) {
				perror(path);
				closedir(d);
				return 1;
			}
			static uint8_t buf[1 << 16];
			size_t n = fread(buf, 1, sizeof(buf), f);
			fclose(f);
			/* a heap copy of exactly n bytes: ASan sees any overread */
			uint8_t *copy = malloc(n ? n : 1);
			if (!copy)
				return 1;
			memcpy(copy, buf, n);
			LLVMFuzzerTestOneInput(copy, n);
			free(copy);
			files++;
		}
		closedir(d);
	}
	printf("query regress: %d inputs replayed, every invariant held\n", files);
	return files ? 0 : 1;
}
