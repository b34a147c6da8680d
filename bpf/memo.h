/* The off-CPU tools' per-thread memos of the last stacks a thread blocked with (bpf/memo.bpf.h). */
#ifndef BPFPROF_MEMO_H
#define BPFPROF_MEMO_H

/*
 * A thread's last user stack and what its walk read. A thread that blocks again with the same user
 * registers and the same words in its stack where the walk read them (return addresses, saved rbps) has
 * the same stack: the walk would read the same words and follow the same rows. Checking that is one read of
 * the stack's top (`span` bytes above sp) instead of a walk.
 */
#define UMEMO_WORDS 32
#define UMEMO_SPAN 4096

struct ustack_memo {
	__u64 ip, sp, bp; /* the user registers the walk began with */
	__u64 id;         /* the stack (0: no memo) */
	__u64 hash;       /* of the words read, and where */
	__u32 end;        /* how the walk ended (enum unwind_end): counted again when the stack is reused */
	__u32 _pad0;
	__u16 n;          /* words read */
	__u16 span;       /* bytes above sp that hold them */
	__u16 off[UMEMO_WORDS];
	__u32 _pad;
};

/*
 * A thread's last kernel stack and where its return addresses lay. The kernel's unwinder, starting from the
 * tracepoint, finds the same frames when the same return addresses sit in the same slots: checking them
 * is one read of the stack instead of a walk (bpf_get_stack costs ~2 us here, mostly before its first
 * frame). Slots are noted by their distance above an anchor in the tracing program's own frame (see
 * bpf/memo.bpf.h), but for those of a system call's entry frames, which the others imply.
 */
#define KMEMO_WORDS 48
#define KMEMO_SPAN 8192
/* Words below the top of the stack that hold a system call's entry frames: the kernel puts a random gap
 * (CONFIG_RANDOMIZE_KSTACK_OFFSET) between them and the rest at each entry, so they are not noted. */
#define KMEMO_ENTRY_WORDS 8

struct kstack_memo {
	__u64 id;   /* the stack (0: no memo) */
	__u64 hash; /* of the return addresses and where they lie */
	__u16 n;    /* return addresses noted: the stack's frames but the `skip` innermost */
	__u16 skip; /* innermost frames below the anchor: the tracing program's own, the same each time */
	__u16 span; /* bytes above the anchor that hold those noted */
	__u16 off[KMEMO_WORDS];
	__u16 live; /* 1: noted above where the task's switch overwrites: checkable when it is switched back in */
};

#endif
