/* A library built without frame pointers, which `nofp dlopen LIB` loads once tracing has begun (its code is
 * in no mapping known when the trace started): lib_work -> lib_middle -> lib_spin. */
#define NOINLINE __attribute__((noinline))

volatile long lib_sink;

NOINLINE long lib_spin(long n)
{
	long x = 0;

	for (long i = 0; i < n; i++)
		lib_sink = x += i;
	return x;
}

NOINLINE long lib_middle(long n)
{
	long r = lib_spin(n);

	lib_sink = r;
	return r + 1;
}

long lib_work(long n)
{
	long r = lib_middle(n);

	lib_sink = r;
	return r + 1;
}
