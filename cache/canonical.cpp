// canonical.cpp: being written (issue 3).
