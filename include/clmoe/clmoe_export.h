/*
 * clmoe_export.h - symbol visibility for the public interface.
 *
 * The library is built with hidden visibility; only declarations marked
 * CLMOE_API are exported (and a version script admits only clmoe_*).
 */
#ifndef CLMOE_EXPORT_H
#define CLMOE_EXPORT_H

#if defined(_WIN32)
#if defined(CLMOE_BUILDING)
#define CLMOE_API __declspec(dllexport)
#else
#define CLMOE_API __declspec(dllimport)
#endif
#elif defined(__GNUC__) || defined(__clang__)
#define CLMOE_API __attribute__((visibility("default")))
#else
#define CLMOE_API
#endif

#endif /* CLMOE_EXPORT_H */
