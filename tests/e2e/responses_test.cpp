// Placeholder: the responses dialect through the real binary and the fake upstream.
#include <doctest/doctest.h>
