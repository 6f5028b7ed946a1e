/* An independent peer for vhdkit's VMBus ring: the layout written from Linux's struct
 * hv_ring_buffer and struct vmpacket_descriptor (include/linux/hyperv.h), the algorithm from
 * drivers/hv/ring_buffer.c. Runs against a ring file that another process has mapped.
 *
 *   ring_peer read  RING COUNT         take COUNT numbered packets, checking every byte
 *   ring_peer write RING COUNT [SIZE]  send COUNT numbered packets of varying sizes (or all SIZE bytes)
 *
 * A numbered packet: u64 seq, u32 size, u32 crc32(seq bytes + bytes 16..size), then bytes
 * (i % 256) for i = 0.. ; trans_id = seq. Prints "ok COUNT wraps W" or a reason and exits 1. */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct hv_ring_buffer {
    uint32_t write_index;
    uint32_t read_index;
    uint32_t interrupt_mask;
    uint32_t pending_send_sz;
    uint32_t reserved1[12];
    union {
        struct { uint32_t feat_pending_send_sz:1; };
        uint32_t value;
    } feature_bits;
    uint8_t reserved2[4096 - 68];
    uint8_t buffer[];
} __attribute__((packed));

struct vmpacket_descriptor {
    uint16_t type;
    uint16_t offset8;
    uint16_t len8;
    uint16_t flags;
    uint64_t trans_id;
} __attribute__((packed));

_Static_assert(sizeof(struct hv_ring_buffer) == 4096, "header page");
_Static_assert(offsetof(struct hv_ring_buffer, read_index) == 0x04, "read_index");
_Static_assert(offsetof(struct hv_ring_buffer, interrupt_mask) == 0x08, "interrupt_mask");
_Static_assert(offsetof(struct hv_ring_buffer, pending_send_sz) == 0x0c, "pending_send_sz");
_Static_assert(offsetof(struct hv_ring_buffer, feature_bits) == 0x40, "feature_bits");
_Static_assert(sizeof(struct vmpacket_descriptor) == 16, "descriptor");

/* CRC-32 (zlib's polynomial), eight bytes per step through eight tables, so that checking a
 * 1,500-byte packet costs the C peer about what zlib costs Python and the peer stays the ceiling
 * (a byte at a time, its check alone held it below vhdkit at 1,500 bytes). Little-endian. */
static uint32_t crc_table[8][256];

static void crc32_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & -(c & 1));
        crc_table[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (uint32_t i = 0; i < 256; i++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xFF];
}

static uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n) {
    crc = ~crc;
    for (; n >= 8; p += 8, n -= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
        lo ^= crc;
        crc = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^ crc_table[5][(lo >> 16) & 0xFF]
            ^ crc_table[4][lo >> 24] ^ crc_table[3][hi & 0xFF] ^ crc_table[2][(hi >> 8) & 0xFF]
            ^ crc_table[1][(hi >> 16) & 0xFF] ^ crc_table[0][hi >> 24];
    }
    while (n--) crc = crc_table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

static struct hv_ring_buffer *ring;
static uint32_t dsize;

static void copy_out(uint32_t at, void *dst, uint32_t n) {
    uint32_t first = n < dsize - at ? n : dsize - at;
    memcpy(dst, ring->buffer + at, first);
    memcpy((uint8_t *)dst + first, ring->buffer, n - first);
}

static void copy_in(uint32_t at, const void *src, uint32_t n) {
    uint32_t first = n < dsize - at ? n : dsize - at;
    memcpy(ring->buffer + at, src, first);
    memcpy(ring->buffer, (const uint8_t *)src + first, n - first);
}

static int fail(const char *what, uint64_t seq) {
    printf("packet %llu: %s\n", (unsigned long long)seq, what);
    return 1;
}

static uint32_t fixed_size;

static uint32_t payload_size(uint64_t seq) { return fixed_size ? fixed_size : 16 + (uint32_t)(seq * 37 % 300); }

static int do_read(uint64_t count) {
    uint8_t buf[4096];
    uint64_t wraps = 0;
    for (uint64_t seq = 0; seq < count; seq++) {
        uint32_t r = ring->read_index, w;
        while ((w = __atomic_load_n(&ring->write_index, __ATOMIC_ACQUIRE)) == r)
            ;
        uint32_t avail = w >= r ? w - r : dsize - (r - w);
        struct vmpacket_descriptor d;
        copy_out(r, &d, sizeof d);
        uint32_t len = d.len8 * 8u, off = d.offset8 * 8u;
        if (off != 16 || len < 16 || len + 8 > avail || len > sizeof buf) return fail("bad descriptor", seq);
        if (d.type != 6 || d.trans_id != seq) return fail("wrong type or trans_id", seq);
        copy_out(r, buf, len);
        uint64_t trailer;
        copy_out((r + len) % dsize, &trailer, 8);
        if (trailer != (uint64_t)r << 32) return fail("trailer is not the start offset << 32", seq);
        uint8_t *p = buf + 16;
        uint64_t got_seq; uint32_t size, crc;
        memcpy(&got_seq, p, 8); memcpy(&size, p + 8, 4); memcpy(&crc, p + 12, 4);
        if (got_seq != seq || size < 16 || size > len - 16 || len - 16 >= size + 8) return fail("header", seq);
        uint32_t want = crc32_update(crc32_update(0, p, 8), p + 16, size - 16);
        if (want != crc) return fail("crc", seq);
        for (uint32_t i = size; i < len - 16; i++) if (p[i]) return fail("padding not zero", seq);
        uint32_t next = r + len + 8;
        if (next >= dsize) { next -= dsize; wraps++; }
        __atomic_store_n(&ring->read_index, next, __ATOMIC_RELEASE);
    }
    printf("ok %llu wraps %llu\n", (unsigned long long)count, (unsigned long long)wraps);
    return 0;
}

static int do_write(uint64_t count) {
    uint8_t pkt[4096];
    uint64_t wraps = 0;
    for (uint64_t seq = 0; seq < count; seq++) {
        uint32_t size = payload_size(seq);
        uint32_t aligned = (16 + size + 7) & ~7u, total = aligned + 8;
        memset(pkt, 0, sizeof pkt);
        struct vmpacket_descriptor d = {6, 2, (uint16_t)(aligned / 8), 0, seq};
        memcpy(pkt, &d, 16);
        uint8_t *p = pkt + 16;
        for (uint32_t i = 16; i < size; i++) p[i] = (uint8_t)((i - 16) % 256);
        uint32_t crc = crc32_update(crc32_update(0, (uint8_t *)&seq, 8), p + 16, size - 16);
        memcpy(p, &seq, 8); memcpy(p + 8, &size, 4); memcpy(p + 12, &crc, 4);
        uint32_t w = ring->write_index, r, free_bytes;
        do {
            r = __atomic_load_n(&ring->read_index, __ATOMIC_ACQUIRE);
            free_bytes = w >= r ? dsize - (w - r) : r - w;
        } while (free_bytes <= total);
        uint64_t trailer = (uint64_t)w << 32;
        memcpy(pkt + aligned, &trailer, 8);
        copy_in(w, pkt, total);
        uint32_t next = w + total;
        if (next >= dsize) { next -= dsize; wraps++; }
        __atomic_store_n(&ring->write_index, next, __ATOMIC_RELEASE);
    }
    printf("ok %llu wraps %llu\n", (unsigned long long)count, (unsigned long long)wraps);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) { fprintf(stderr, "usage: ring_peer read|write RING COUNT [SIZE]\n"); return 2; }
    if (argc == 5) fixed_size = (uint32_t)strtoul(argv[4], NULL, 10);
    if (argc == 5 && (fixed_size < 16 || fixed_size > 4000)) { fprintf(stderr, "SIZE: 16 to 4000\n"); return 2; }
    int fd = open(argv[2], O_RDWR);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) { perror(argv[2]); return 2; }
    ring = mmap(NULL, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (ring == MAP_FAILED) { perror("mmap"); return 2; }
    dsize = (uint32_t)(st.st_size - 4096);
    if (ring->feature_bits.feat_pending_send_sz != 1) { printf("feature bit 0 not set\n"); return 1; }
    crc32_init();
    uint64_t count = strtoull(argv[3], NULL, 10);
    return strcmp(argv[1], "read") == 0 ? do_read(count) : do_write(count);
}
