// The libxen* C headers, included with C linkage (they carry no extern "C" guards of their own).
// Include this instead of <xenstore.h> & co. from C++. <xenctrl.h> is not here: it needs GNU
// extensions and is only included by the .cpp files that call xc_*.
#pragma once

#include <cstdint>  // the Xen public headers expect <stdint.h> types

extern "C" {
#include <xenevtchn.h>
#include <xenforeignmemory.h>
#include <xengnttab.h>
#include <xenstore.h>
}
