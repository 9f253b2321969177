/* commands.h — the CLI's subcommands as one X-macro list: NBL_CMD(name, function, help).
 * Each function lives in cli/cmd_<name>.c (or cli/nbl.c) as int fn(int argc, char **argv),
 * with argv[0] the subcommand name. Add a line here to add a command. */
NBL_CMD(info, cmd_info, "show a model's metadata and tensors: nbl info MODEL")
NBL_CMD(run, cmd_run, "generate: nbl run -m MODEL (--tokens 1,2,3 | -p TEXT) -n N")
NBL_CMD(synth, cmd_synth, "write a random-weight model with a real model's shapes: nbl synth NAME -t TYPE -o OUT.gguf")
NBL_CMD(convert, cmd_convert, "convert a Hugging Face checkpoint to GGUF: nbl convert HF_DIR -o OUT.gguf [--type f16|bf16|f32]")
NBL_CMD(chat, cmd_chat, "interactive chat that keeps the conversation in the KV cache: nbl chat -m MODEL")
