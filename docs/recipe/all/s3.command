warmup.py --arch resnet20 --epochs 30 --batch-size 128 --amp bf16 --with zerogamma nobiasdecay resnet_d cosine labelsmooth mixup --seed 3 
