/* CRC-32C (Castagnoli) of segment chunks: the SSE4.2 instruction where the CPU
 * has it (about 8 bytes a cycle, so checksumming what is written costs little
 * beside writing it), else a table. */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pktstore_int.h"

static uint32_t table[256];
static int use_hw;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void setup(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		table[i] = c;
	}
#if defined(__x86_64__)
	__builtin_cpu_init();
	use_hw = __builtin_cpu_supports("sse4.2");
#endif
}

static uint32_t sw(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len--)
		crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t hw(uint32_t crc, const uint8_t *p, size_t len)
{
	uint64_t c = crc;
	while (len >= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		c = __builtin_ia32_crc32di(c, v);
		p += 8;
		len -= 8;
	}
	uint32_t c32 = (uint32_t)c;
	while (len--)
		c32 = __builtin_ia32_crc32qi(c32, *p++);
	return c32;
}
#endif

uint32_t pks__crc32c(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&once, setup);
	crc = ~crc;
#if defined(__x86_64__)
	if (use_hw)
		return ~hw(crc, buf, len);
#endif
	return ~sw(crc, buf, len);
}
