// The executable that owns the tests' shared precompiled header (cmake/TorchPch.cmake).
int main() { return 0; }
