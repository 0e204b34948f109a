/* Fixture of tests/deps_can_fail.sh (not built, not scanned by deps_declared): a test source that
 * imports a module no line of scripts/deps.list declares and runs a program that is absent. */
#include <stdio.h>
#include <stdlib.h>
int main(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c 'import json, xmlrpc.client, medkd_no_such_mod'");
    int a = system(cmd);
    int b = system("zzz_no_such_tool --version && /usr/bin/zzz_absent_tool -x");
    return a | b;
}
