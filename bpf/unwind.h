/* Unwind tables for user stacks without frame pointers: types shared by bpf/unwind.bpf.h and src/unwind/. */
#ifndef BPFPROF_UNWIND_H
#define BPFPROF_UNWIND_H

/* How user stacks are walked (rodata `unwind_mode`, --unwind). */
enum unwind_mode {
	UNWIND_MODE_FP = 0,    /* frame pointers only (bpf_get_stack), as bcc and perf -g */
	UNWIND_MODE_DWARF = 1, /* unwind tables only: a frame without one ends the stack, marked */
	UNWIND_MODE_AUTO = 2,  /* unwind tables where a binary has them, frame pointers elsewhere */
};

/*
 * One row of a binary's unwind table: from `pc` (the binary's own virtual address) up to the next row's,
 * how to find the caller's frame. The return address is always at CFA - 8 (x86-64). 8 bytes, sorted by pc.
 * `rule` packs, from bit 0: the cfa_type (3 bits); rbp_off (8 bits, signed: the caller's rbp is at
 * CFA + 8 * rbp_off; 0: rbp unchanged; RBP_LOST: not known); cfa_off (21 bits: frames of up to 2 MiB,
 * which Rust code has, are common past 64 KiB).
 */
struct unwind_row {
	__u32 pc;
	__u32 rule;
};

#define ROW_CFA_TYPE(rule) ((rule) & 7)
#define ROW_RBP_OFF(rule) ((__s8)(((rule) >> 3) & 0xff))
#define ROW_CFA_OFF(rule) ((rule) >> 11)
#define ROW_MAX_CFA_OFF ((1 << 21) - 1)

enum cfa_type {
	CFA_NONE = 0,        /* no unwind information here */
	CFA_RSP = 1,         /* CFA = rsp + cfa_off */
	CFA_RBP = 2,         /* CFA = rbp + cfa_off */
	CFA_PLT11 = 3,       /* a PLT entry: CFA = rsp + cfa_off + ((pc & 15) >= 11 ? 8 : 0) */
	CFA_PLT10 = 4,       /* the same with 10 (.plt.sec-style entries) */
	CFA_DEREF_RBP = 5,   /* stack realignment: CFA = *(rbp - cfa_off) */
	CFA_END = 6,         /* the outermost frame (its return address is undefined): the stack is whole */
	CFA_UNSUPPORTED = 7, /* a rule this unwinder cannot follow (signal frames, other expressions) */
};

#define RBP_LOST (-128)

/*
 * A table as the kernel holds it: first one slot per page (1 << UNWIND_PAGE_SHIFT bytes) of the binary's
 * addresses, from the page of its first row on, naming the rows to search for an address in that page (the
 * row that covers the page's start and those that start in it: at most a page's bytes + 1); then the rows,
 * their pcs relative to that first page. A walk searches a page's few rows, not the whole table's
 * (libc's 28k rows: 15 steps; a page of it: 3 on average). Slots are 8 bytes, as rows.
 */
#define UNWIND_PAGE_SHIFT 12
/* Binary search steps within a page: log2(4097) rounded up. */
#define UNWIND_PAGE_STEPS (UNWIND_PAGE_SHIFT + 1)

struct unwind_page {
	__u32 first; /* the first row to search, counted from the table's first row */
	__u32 count;
};

/* Slots are kept in chunks (inner arrays of `unwind_chunks`) created as tables are loaded. */
#define UNWIND_CHUNK_SHIFT 16
#define UNWIND_CHUNK_ROWS (1 << UNWIND_CHUNK_SHIFT)
/* 512 KiB a chunk: 2048 chunks are 1 GiB of rows, the most --unwind-memory allows. */
#define UNWIND_MAX_CHUNKS 2048

/* What an executable mapping holds (struct unwind_mapping's kind). */
enum mapping_kind {
	MAPPING_TABLE = 0,  /* a file with an unwind table: `table`, `rows` */
	MAPPING_NO_CFI = 1, /* a file without unwind information */
	MAPPING_JIT = 2,    /* anonymous executable memory (JIT code) */
	MAPPING_NO_ROOM = 3, /* a file whose table did not fit in --unwind-memory */
};

/* One executable mapping of a process: [start, start + len); pc - bias is the address relative to its
 * table's first page (the binary's own address less that page's). */
struct unwind_mapping {
	__u64 start;
	__u64 bias;
	__u32 len;
	__u32 table; /* its table's first slot (global index over the chunks): the page index */
	__u32 pages; /* page slots; the rows follow them */
	__u32 kind;  /* enum mapping_kind */
};

/* A process's executable mappings, sorted by start: `count` entries of `unwind_mappings` from `first`. */
struct unwind_proc {
	__u32 first;
	__u32 count;
};

/* Entries of `unwind_mappings` for all processes together, and processes with tables at once. */
#define UNWIND_MAX_MAPPINGS 65536
#define UNWIND_MAX_PROCS 32768
/* The most mappings one process can have searched (binary search steps: log2 of it). */
#define UNWIND_PROC_MAPPINGS_LOG2 12

/* Why a walk ended. The stack's last frame is then a marker, UNWIND_MARKER | reason, that user space
 * names (e.g. `[unwind stopped: no CFI in libfoo.so]`); a whole stack (UNWIND_COMPLETE) has none. */
enum unwind_end {
	UNWIND_COMPLETE = 0,
	UNWIND_NO_CFI = 1,      /* a binary without unwind information for this pc (and no frame pointer) */
	UNWIND_UNSUPPORTED = 2, /* a rule this unwinder cannot follow */
	UNWIND_NO_MAPPING = 3,  /* a pc in no executable mapping known (code mapped since: re-read asked) */
	UNWIND_JIT = 4,         /* a pc in anonymous executable memory, without a frame pointer to follow */
	UNWIND_NOT_LOADED = 5,  /* the process's tables were not loaded yet */
	UNWIND_NO_ROOM = 6,     /* the binary's table did not fit in --unwind-memory */
	UNWIND_READ_FAILED = 7, /* the stack's memory could not be read (not resident) */
	UNWIND_BAD_FRAME = 8,   /* a frame pointed nowhere sane */
	UNWIND_TRUNCATED = 9,   /* --perf-max-stack-depth frames taken */
	UNWIND_REASONS = 10,
};

#define UNWIND_MARKER 0xfffffffffffff000ULL


#endif
