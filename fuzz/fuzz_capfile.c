/* libFuzzer target for the capture file readers (capture/file.c): the input is a
 * whole capture file, pcap or pcapng, given to cap_open_file() through a memfd
 * (so both our mapped pcap parser and the libpcap path for pcapng and the older
 * pcap versions are reached), then every packet is read with cap_next().
 *
 * Invariants checked on every packet: the bytes lie inside what the reader says
 * (the first and last byte are read, so AddressSanitizer sees an overread of a
 * mapping or a buffer), caplen <= CAP_MAX_SNAPLEN, caplen <= wirelen <= caplen +
 * CAP_MAX_WIRE_EXCESS, the clamp counter never exceeds the packets read, and the
 * reader ends (with 0 or an error) within a bound of records.
 *
 * Seeds: small pcap and pcapng files (run-fuzz takes the generated test captures);
 * tests/capture/regress-file/ is replayed in CI through tests/decode/regress.c. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "capture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int memfd = -1;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (memfd < 0 && (memfd = memfd_create("fuzz-capfile", MFD_CLOEXEC)) < 0)
		abort();
	if (ftruncate(memfd, 0) < 0 || pwrite(memfd, data, size, 0) != (ssize_t)size)
		abort();
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
	struct cap_source *s = NULL;
	char err[512];
	if (cap_open_file(path, &s, err, sizeof(err)) < 0)
		return 0;
	struct cap_packet pk;
	uint64_t n = 0;
	int rc;
	/* every record costs at least 16 bytes of header, except in a pcapng file whose
	 * blocks libpcap may skip: never more packets than bytes */
	while ((rc = cap_next(s, &pk)) == 1) {
		if (++n > size)
			abort();
		if (pk.caplen > CAP_MAX_SNAPLEN || pk.wirelen < pk.caplen ||
		    (uint64_t)pk.wirelen > (uint64_t)pk.caplen + CAP_MAX_WIRE_EXCESS)
			abort();
		if (pk.caplen) {
			volatile uint8_t first = pk.data[0], last = pk.data[pk.caplen - 1];
			(void)first;
			(void)last;
		}
	}
	struct cap_stats cs;
	cap_stats(s, &cs);
	if (cs.received != n || cs.wirelen_clamped > n)
		abort();
	if (rc < 0 && !cap_error(s)[0])
		abort(); /* an error always says what */
	cap_close(s);
	return 0;
}
