// A translation unit for the targets that own megahost's shared precompiled headers
// (cmake/TorchPch.cmake); the header itself is what they exist for.
int megahost_pch_anchor() { return 0; }
