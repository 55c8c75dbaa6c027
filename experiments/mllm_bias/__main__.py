from experiments.mllm_bias.run import main

main()
