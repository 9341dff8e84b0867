// Placeholder: the responses dialect's unit tests (proxy/dialects/responses.cpp) go here.
#include <doctest/doctest.h>
