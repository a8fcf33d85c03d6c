{
  "targets": [
    {
      "target_name": "edgelan_tap",
      "conditions": [
        ["OS=='linux'", {
          "sources": ["tap.c"],
          "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-O2"],
          "defines": ["NAPI_VERSION=8"]
        }]
      ]
    }
  ]
}
