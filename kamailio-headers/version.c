/* Prints the version and compile-flags strings of the Kamailio headers this module is built against.
 * build.rs compiles it with Kamailio's own -D set and turns the two lines into module_version and
 * module_flags, which Kamailio compares byte for byte when it loads the module. */
#include <stdio.h>
#include "core/ver_defs.h"

int main(void)
{
	printf("%s\n%s\n", SER_FULL_VERSION, SER_COMPILE_FLAGS);
	return 0;
}
