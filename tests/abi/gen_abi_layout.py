#!/usr/bin/env python3
"""Prints the layout of every struct in abi/include as MH_LAYOUT_* lines (x86_64, gcc).

abi_layout_v1_0.inc is the FROZEN layout of ABI v1.0, produced by this script. When a minor is
published (it appends members to tables and adds structs), run

    python3 tests/abi/gen_abi_layout.py > /tmp/layout.inc
    diff tests/abi/abi_layout_v1_0.inc /tmp/layout.inc

The diff may only ADD lines and change the MH_LAYOUT_SIZE of tables that grew; a changed or
removed offset line breaks every plugin built against the older headers.
"""
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INCLUDE = os.path.join(ROOT, "abi", "include")


def structs_in(path):
    text = open(path).read()
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    text = re.sub(r"^\s*#[^\n]*", " ", text, flags=re.M)
    for m in re.finditer(r"(?:typedef\s+)?struct\s+(\w+)\s*\{", text):
        name, depth, i = m.group(1), 1, m.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        body = text[m.end():i - 1]
        fields, depth, cur = [], 0, ""
        for ch in body:
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if ch == ";" and depth == 0:
                fields.append(cur.strip())
                cur = ""
            else:
                cur += ch
        names = []
        for decl in fields:
            fp = re.search(r"\(\s*MH_ABI\s*\*\s*(\w+)\s*\)", decl)
            if fp:
                names.append(fp.group(1))
            else:
                for part in decl.split(","):  # "uint32_t major, minor;" style
                    names.append(re.findall(r"(\w+)\s*(?:\[[^\]]*\])?\s*$", part.strip())[0])
        yield name, names


def main():
    headers = sorted(os.path.relpath(os.path.join(d, f), INCLUDE)
                     for d, _, fs in os.walk(INCLUDE) for f in fs if f.endswith(".h"))
    structs = [s for h in headers for s in structs_in(os.path.join(INCLUDE, h))]
    prog = ["#include <stdio.h>", "#include <stddef.h>", '#include "megahost/megahost.h"', "int main(void) {"]
    for name, fields in structs:
        prog.append('printf("MH_LAYOUT_SIZE(%s, %%zu)\\n", sizeof(%s));' % (name, name))
        for f in fields:
            prog.append('printf("MH_LAYOUT_FIELD(%s, %s, %%zu)\\n", offsetof(%s, %s));' % (name, f, name, f))
    prog.append("return 0; }")
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = os.path.join(tmp, "layout.c"), os.path.join(tmp, "layout")
        open(src, "w").write("\n".join(prog) + "\n")
        subprocess.check_call(["cc", "-std=c11", "-I", INCLUDE, src, "-o", exe])
        sys.stdout.write(subprocess.check_output([exe]).decode())


if __name__ == "__main__":
    main()
